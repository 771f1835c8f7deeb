"""PublishEvent and the app-opened subscription stream (Layotto's SubscribeTopicEvents, Dapr's
SubscribeTopicEventsAlpha1) of both gRPC APIs over `layotto.core.pubsub`: the messages have the
same fields in both protos."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from google.protobuf import empty_pb2

from layotto.api.common import (
    Answering,
    Answers,
    Ctx,
    OpenStreams,
    answered,
    caller_traceparent,
    opened,
    release,
    settle,
)
from layotto.components.pubsub.base import Subscription
from layotto.core import cloudevents
from layotto.core.problems import Problem
from layotto.core.pubsub import PubSubCore
from layotto.core.pubsub import PubSubProblem as P
from layotto.runtime.appchannel import Status, status_of
from layotto.runtime.delivery import DeliveryPolicy, DeliveryStats, Dispatcher, component_metadata
from layotto.runtime.runtime import Runtime
from layotto.runtime.subscriptions import with_dead_letter

__all__ = ["PublishRpcs", "SubscribeRpcs"]

log = logging.getLogger("layotto.api.pubsub")

_EMPTY = empty_pb2.Empty()


class PublishRpcs(Answering[PubSubCore]):
    @answered
    async def PublishEvent(self, request: Any, context: Ctx) -> empty_pb2.Empty:
        await self.core.publish(
            request.pubsub_name,
            request.topic,
            request.data,
            request.data_content_type,
            dict(request.metadata),
            caller_traceparent(context),
        )
        return _EMPTY


class SubscribeRpcs(Answering[PubSubCore]):
    """A subscription the app opens as a bidi stream: an initial request names the pubsub and
    topic, events go out as the API's `event_message`s, the app answers each by id. Events are
    delivered under the same rules as to a callback app (`runtime.delivery.Dispatcher`)."""

    RESPONSE: ClassVar[Any]
    INITIAL_RESPONSE: ClassVar[Any]

    def __init__(self, core: PubSubCore, answers: Answers, rt: Runtime) -> None:
        super().__init__(core, answers)
        self.rt = rt
        #: Counters of the app-opened streams.
        self.stream_stats = DeliveryStats()
        #: The open streams, ended when the sidecar drains.
        self.streams = OpenStreams()

    @staticmethod
    def event_message(event: cloudevents.Event) -> Any:
        """The API's TopicEventRequest for `event`."""
        raise NotImplementedError

    async def drain_api(self) -> None:
        await self.streams.end_all()

    async def stop_api(self) -> None:
        # Subscriptions of streams cancelled since the drain close before their components do.
        await settle()

    @answered
    async def subscribe(self, request_iterator: AsyncIterator[Any], context: Ctx) -> None:
        async with self.streams.hold(context):
            await self._serve(request_iterator, context)

    async def _serve(self, request_iterator: AsyncIterator[Any], context: Ctx) -> None:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if not first.HasField("initial_request"):
            raise Problem(P.INITIAL_REQUEST_MISSING)
        initial = first.initial_request
        name, topic = initial.pubsub_name, initial.topic
        component = self.core.pubsub(name, topic)
        stream = _EventStream(context, lambda event: self.RESPONSE(event_message=self.event_message(event)))
        metadata = with_dead_letter(initial.metadata, initial.dead_letter_topic)
        policy = DeliveryPolicy.from_metadata(metadata, component_metadata(self.rt, name), self.rt.app_id)
        dispatcher = Dispatcher(component, name, topic, policy, self.stream_stats, deliver=stream.deliver)
        subscription: Subscription | None = None
        try:
            try:
                subscription = await opened(component.subscribe(topic, dispatcher, metadata), _close)
            except Exception as exc:
                raise Problem(P.SUBSCRIBE_FAILED, exc, name=name, topic=topic) from exc
            await stream.write(self.RESPONSE(initial_response=self.INITIAL_RESPONSE()))
            stream.open.set()
            async for request in request_iterator:
                if request.HasField("event_processed"):
                    processed = request.event_processed
                    stream.processed(processed.id, status_of(processed.status.status))
        finally:
            dispatcher.closed = True
            stream.close()
            if subscription is not None:
                await release(subscription.close())


async def _close(subscription: Subscription) -> None:
    await subscription.close()


class _EventStream:
    """Sends events on an app-opened stream and waits for the app's verdict on each."""

    def __init__(self, context: Ctx, message: Callable[[cloudevents.Event], Any]) -> None:
        self._context = context
        #: The stream's response carrying `event` (the API's own message types).
        self._message = message
        self._lock = asyncio.Lock()
        self._waiting: dict[str, list[asyncio.Future[Status]]] = {}
        self.open = asyncio.Event()
        self._closed = False

    async def write(self, response: Any) -> None:
        async with self._lock:
            await self._context.write(response)

    async def deliver(self, event: cloudevents.Event, time_limit: float) -> Status:
        await self.open.wait()
        if self._closed:
            return Status.RETRY
        verdict: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(event.id, []).append(verdict)
        try:
            await self.write(self._message(event))
            # Not wait_for: on 3.11 it returns the result of a future that completes as the
            # task is cancelled, and the lost cancellation leaves the component's worker running
            # (its subscription's close() then waits for it for good). close() below completes
            # the verdicts just before the subscription is closed, which is that race.
            async with asyncio.timeout(time_limit):
                return await asyncio.shield(verdict)
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
