"""Pub/Sub API: PublishEvent and SubscribeTopicEvents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from layotto.api.common import Answers, Ctx, answered
from layotto.api.pubsub import PublishRpcs
from layotto.components.pubsub.base import Subscription
from layotto.core import cloudevents
from layotto.core.problems import Problem
from layotto.core.pubsub import PublishStyle, PubSubCore
from layotto.core.pubsub import PubSubProblem as P
from layotto.runtime.appchannel import Status, status_of, topic_event_request
from layotto.runtime.delivery import DeliveryPolicy, DeliveryStats, Dispatcher, component_metadata
from layotto.runtime.runtime import Runtime
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

log = logging.getLogger("layotto.api.pubsub")


class PubSubApi(PublishRpcs):
    STYLE = PublishStyle()

    def __init__(self, core: PubSubCore, answers: Answers, rt: Runtime) -> None:
        super().__init__(core, answers)
        self.rt = rt
        #: Counters of the app-opened streams (SubscribeTopicEvents).
        self.stream_stats = DeliveryStats()

    @answered
    async def SubscribeTopicEvents(
        self, request_iterator: AsyncIterator[pb.SubscribeTopicEventsRequest], context: Ctx
    ) -> None:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if first.WhichOneof("subscribe_topic_events_request_type") != "initial_request":
            raise Problem(P.INITIAL_REQUEST_MISSING)
        initial = first.initial_request
        name, topic = initial.pubsub_name, initial.topic
        component = self.core.pubsub(name, topic)
        stream = _EventStream(context)
        metadata = dict(initial.metadata)
        if initial.HasField("dead_letter_topic") and initial.dead_letter_topic:
            metadata["deadLetterTopic"] = initial.dead_letter_topic
        policy = DeliveryPolicy.from_metadata(metadata, component_metadata(self.rt, name), self.rt.app_id)
        dispatcher = Dispatcher(component, name, topic, policy, stream.deliver, self.stream_stats)
        subscription: Subscription | None = None
        try:
            try:
                subscription = await component.subscribe(topic, dispatcher, metadata)
            except Exception as exc:
                raise Problem(P.SUBSCRIBE_FAILED, exc, name=name, topic=topic) from exc
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
