"""DelayQueue: PublishDelayMessage through a delay-capable pub/sub component.

The message is wrapped in a CloudEvent as PublishEvent wraps it (unless `rawPayload`), so
subscribers receive it exactly like an event published at its due time; the returned
message_id is the CloudEvent id the subscriber sees. `ttlInSeconds` counts from the due time.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from layotto.api.extension.common import ExtensionApi, code_of, component_not_found
from layotto.api.layotto.base import Ctx, abort
from layotto.components.delay_queue.base import DelayedMessage, DelayScheduler, scheduler_for
from layotto.components.pubsub.base import PubSub
from layotto.core import cloudevents
from layotto.errors import ComponentError
from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2 as pb
from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2_grpc as pb_grpc

log = logging.getLogger("layotto.api.delay_queue")

KIND = "delay_queue"


class DelayQueueApi(ExtensionApi, pb_grpc.DelayQueueServicer):
    _schedulers: dict[str, DelayScheduler]

    async def start_api(self) -> None:
        self._schedulers = {}
        for name, component in self.rt.components("pubsub").items():
            spec = self.rt.spec("pubsub", name)
            if not isinstance(component, PubSub) or spec is None:
                continue
            scheduler = scheduler_for(spec.type, component, name, spec.metadata)
            if scheduler is None:
                continue
            await scheduler.start()
            self._schedulers[name] = scheduler

    async def stop_api(self) -> None:
        for name, scheduler in self._schedulers.items():
            try:
                await scheduler.stop()
            except Exception:
                log.exception("stopping the delay queue of %s failed", name)

    async def PublishDelayMessage(self, request: pb.DelayMessageRequest, context: Ctx) -> pb.DelayMessageResponse:
        name, topic = request.component_name, request.topic
        scheduler = self._schedulers.get(name)
        if scheduler is None:
            await component_not_found(context, KIND, name)
        if not topic:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"topic is empty in pubsub {name}")
        metadata = dict(request.metadata)
        delay = max(0, request.delay_in_seconds)
        if cloudevents.is_truthy(metadata.get(cloudevents.RAW_PAYLOAD)):
            message_id, payload = uuid.uuid4().hex, request.data
        else:
            content_type = request.data_content_type
            if cloudevents.is_cloudevent_type(content_type):
                try:
                    envelope = cloudevents.from_cloudevent(request.data, topic=topic, pubsub_name=name)
                except cloudevents.CloudEventError as exc:
                    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"cannot create cloudevent: {exc}")
            else:
                envelope = cloudevents.new_envelope(
                    topic=topic, pubsub_name=name, data=request.data, content_type=content_type
                )
            try:
                cloudevents.apply_ttl(envelope, metadata, now=datetime.now(UTC) + timedelta(seconds=delay))
            except ValueError:
                pass  # as PublishEvent: a ttlInSeconds that is not a number is ignored
            message_id, payload = str(envelope.get("id") or uuid.uuid4().hex), cloudevents.encode(envelope)
        message = DelayedMessage(id=message_id, topic=topic, data=payload, metadata=metadata)
        try:
            await scheduler.schedule(message, float(delay))
        except ComponentError as exc:
            await abort(context, code_of(exc), f"error when publish to topic {topic} in pubsub {name}: {exc}")
        return pb.DelayMessageResponse(message_id=message_id)
