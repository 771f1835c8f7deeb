"""Dapr Pub/Sub API: PublishEvent and BulkPublishEvent(Alpha1), with daprd's CloudEvent
envelope (source = the app id, type `com.dapr.event.sent`) and its codes and messages.

Events are wrapped by the same CloudEvents code as the Layotto API's, so subscribers of
either API receive them alike.
"""

from __future__ import annotations

import grpc
from dapr.proto.runtime.v1 import pubsub_pb2 as pb
from google.protobuf import empty_pb2

from layotto.api.common import caller_traceparent
from layotto.api.dapr.base import ApiBase, Ctx, abort, code_of
from layotto.components.pubsub.base import PubSub
from layotto.errors import ComponentError
from layotto.runtime import cloudevents

_EMPTY = empty_pb2.Empty()
DAPR_EVENT_TYPE = "com.dapr.event.sent"


class _PublishError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class DaprPubSubApi(ApiBase):
    _dapr_pubsubs: dict[str, PubSub]

    async def start_api(self) -> None:
        self._dapr_pubsubs = {n: c for n, c in self.rt.components("pubsub").items() if isinstance(c, PubSub)}

    async def _dapr_pubsub(self, context: Ctx, name: str, topic: str) -> PubSub:
        pubsubs: dict[str, PubSub] = getattr(self, "_dapr_pubsubs", {})
        if not pubsubs:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "no pubsub is configured")
        if not name:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "pubsub name is empty")
        component = pubsubs.get(name)
        if component is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"pubsub {name} not found")
        if not topic:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"topic is empty in pubsub {name}")
        return component

    def _payload(
        self, name: str, topic: str, data: bytes, content_type: str, metadata: dict[str, str], trace: str
    ) -> bytes:
        if cloudevents.is_truthy(metadata.get(cloudevents.RAW_PAYLOAD)):
            return data
        if cloudevents.is_cloudevent_type(content_type):
            try:
                envelope = cloudevents.from_cloudevent(data, topic=topic, pubsub_name=name, trace_id=trace)
            except cloudevents.CloudEventError as exc:
                raise _PublishError(grpc.StatusCode.INVALID_ARGUMENT, f"cannot create cloudevent: {exc}") from None
        else:
            envelope = cloudevents.new_envelope(
                topic=topic,
                pubsub_name=name,
                data=data,
                content_type=content_type,
                trace_id=trace,
                source=self.rt.app_id or "layotto",
                event_type=DAPR_EVENT_TYPE,
            )
        try:
            cloudevents.apply_ttl(envelope, metadata)
        except ValueError:
            raise _PublishError(
                grpc.StatusCode.INVALID_ARGUMENT, f"ttlInSeconds must be an integer: {metadata.get('ttlInSeconds')!r}"
            ) from None
        return cloudevents.encode(envelope)

    async def PublishEvent(self, request: pb.PublishEventRequest, context: Ctx) -> empty_pb2.Empty:
        name, topic = request.pubsub_name, request.topic
        component = await self._dapr_pubsub(context, name, topic)
        metadata = dict(request.metadata)
        try:
            payload = self._payload(
                name, topic, request.data, request.data_content_type, metadata, caller_traceparent(context)
            )
        except _PublishError as exc:
            await abort(context, exc.code, str(exc))
        try:
            await component.publish(topic, payload, metadata)
        except ComponentError as exc:
            await abort(context, code_of(exc), f"error when publish to topic {topic} in pubsub {name}: {exc}")
        return _EMPTY

    async def BulkPublishEvent(self, request: pb.BulkPublishRequest, context: Ctx) -> pb.BulkPublishResponse:
        """Each entry is published on its own; failed entries are listed, as daprd does for
        components without native bulk publish."""
        name, topic = request.pubsub_name, request.topic
        component = await self._dapr_pubsub(context, name, topic)
        trace = caller_traceparent(context)
        common = dict(request.metadata)
        seen: set[str] = set()
        for entry in request.entries:
            if not entry.entry_id:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "entryId is duplicated or not present for entry")
            if entry.entry_id in seen:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "entryId is duplicated or not present for entry")
            seen.add(entry.entry_id)
        reply = pb.BulkPublishResponse()
        for entry in request.entries:
            metadata = {**common, **dict(entry.metadata)}
            try:
                payload = self._payload(name, topic, entry.event, entry.content_type, metadata, trace)
                await component.publish(topic, payload, metadata)
            except (_PublishError, ComponentError) as exc:
                reply.failedEntries.add(entry_id=entry.entry_id, error=str(exc))
        return reply

    async def BulkPublishEventAlpha1(self, request: pb.BulkPublishRequest, context: Ctx) -> pb.BulkPublishResponse:
        return await self.BulkPublishEvent(request, context)
