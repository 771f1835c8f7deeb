"""Pub/Sub API: PublishEvent and SubscribeTopicEvents, with upstream's codes and messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from layotto.api.common import caller_traceparent, failure_code
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.pubsub.base import PubSub, Subscription
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto.runtime import cloudevents
from layotto.runtime.appchannel import Status, status_of, topic_event_request
from layotto.runtime.delivery import DeliveryPolicy, DeliveryStats, Dispatcher, component_metadata

log = logging.getLogger("layotto.api.pubsub")

_EMPTY = empty_pb2.Empty()


class PubSubApi(ApiBase):
    _pubsubs: dict[str, PubSub]
    #: Counters of the app-opened streams (SubscribeTopicEvents).
    stream_stats: DeliveryStats

    async def start_api(self) -> None:
        self._pubsubs = {n: c for n, c in self.rt.components("pubsub").items() if isinstance(c, PubSub)}
        self.stream_stats = DeliveryStats()

    async def _pubsub(self, context: Ctx, name: str, topic: str) -> PubSub:
        if not name:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "pubsub name is empty")
        if not topic:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"topic is empty in pubsub {name}")
        component = self._pubsubs.get(name)
        if component is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"pubsub {name} not found")
        return component

    async def PublishEvent(self, request: pb.PublishEventRequest, context: Ctx) -> empty_pb2.Empty:
        name, topic = request.pubsub_name, request.topic
        component = await self._pubsub(context, name, topic)
        metadata = dict(request.metadata)
        if cloudevents.is_truthy(metadata.get(cloudevents.RAW_PAYLOAD)):
            payload = request.data
        else:
            trace = caller_traceparent(context)
            content_type = request.data_content_type
            if cloudevents.is_cloudevent_type(content_type):
                try:
                    envelope = cloudevents.from_cloudevent(request.data, topic=topic, pubsub_name=name, trace_id=trace)
                except cloudevents.CloudEventError as exc:
                    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"cannot create cloudevent: {exc}")
            else:
                envelope = cloudevents.new_envelope(
                    topic=topic, pubsub_name=name, data=request.data, content_type=content_type, trace_id=trace
                )
            try:
                cloudevents.apply_ttl(envelope, metadata)
            except ValueError:
                pass  # upstream ignores a ttlInSeconds that is not a number
            payload = cloudevents.encode(envelope)
        try:
            await component.publish(topic, payload, metadata)
        except Exception as exc:
            # Upstream answers 13 for every failure; an unreachable backend is UNAVAILABLE here
            # so clients can retry, with upstream's text.
            await abort(context, failure_code(exc), f"error when publish to topic {topic} in pubsub {name}: {exc}")
        return _EMPTY

    async def SubscribeTopicEvents(
        self, request_iterator: AsyncIterator[pb.SubscribeTopicEventsRequest], context: Ctx
    ) -> None:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if first.WhichOneof("subscribe_topic_events_request_type") != "initial_request":
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "initial request is required as the first message of SubscribeTopicEvents",
            )
        initial = first.initial_request
        component = await self._pubsub(context, initial.pubsub_name, initial.topic)
        stream = _EventStream(context)
        metadata = dict(initial.metadata)
        if initial.HasField("dead_letter_topic") and initial.dead_letter_topic:
            metadata["deadLetterTopic"] = initial.dead_letter_topic
        policy = DeliveryPolicy.from_metadata(
            metadata, component_metadata(self.rt, initial.pubsub_name), self.rt.app_id
        )
        dispatcher = Dispatcher(
            component, initial.pubsub_name, initial.topic, policy, stream.deliver, self.stream_stats
        )
        subscription: Subscription | None = None
        try:
            try:
                subscription = await component.subscribe(initial.topic, dispatcher, metadata)
            except Exception as exc:
                await abort(
                    context,
                    failure_code(exc),
                    f"error when subscribe to topic {initial.topic} in pubsub {initial.pubsub_name}: {exc}",
                )
            await stream.write(
                pb.SubscribeTopicEventsResponse(initial_response=pb.SubscribeTopicEventsResponseInitial())
            )
            stream.open.set()
            async for request in request_iterator:
                if request.WhichOneof("subscribe_topic_events_request_type") == "event_processed":
                    processed = request.event_processed
                    stream.processed(processed.id, status_of(processed.status.status))
        finally:
            dispatcher.closed = True
            stream.close()
            if subscription is not None:
                await subscription.close()


class _EventStream:
    """Sends events on an app-opened stream and waits for the app's verdict on each."""

    def __init__(self, context: Ctx) -> None:
        self._context = context
        self._lock = asyncio.Lock()
        self._waiting: dict[str, list[asyncio.Future[Status]]] = {}
        self.open = asyncio.Event()
        self._closed = False

    async def write(self, response: pb.SubscribeTopicEventsResponse) -> None:
        async with self._lock:
            await self._context.write(response)

    async def deliver(self, event: cloudevents.Event, time_limit: float) -> Status:
        await self.open.wait()
        if self._closed:
            return Status.RETRY
        verdict: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(event.id, []).append(verdict)
        try:
            await self.write(pb.SubscribeTopicEventsResponse(event_message=topic_event_request(event)))
            return await asyncio.wait_for(asyncio.shield(verdict), time_limit)
        finally:
            waiting = self._waiting.get(event.id)
            if waiting and verdict in waiting:
                waiting.remove(verdict)
                if not waiting:
                    del self._waiting[event.id]

    def processed(self, event_id: str, status: Status) -> None:
        waiting = self._waiting.get(event_id)
        if not waiting:
            log.debug("event_processed for unknown or already answered event %s", event_id)
            return
        verdict = waiting.pop(0)
        if not waiting:
            del self._waiting[event_id]
        if not verdict.done():
            verdict.set_result(status)

    def close(self) -> None:
        self._closed = True
        self.open.set()
        for waiting in self._waiting.values():
            for verdict in waiting:
                if not verdict.done():
                    verdict.set_result(Status.RETRY)
        self._waiting.clear()
