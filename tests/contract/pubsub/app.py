"""Test apps: an AppCallback gRPC server on a free port recording what it receives, and a Dapr
app taking its events in batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2 as dcb
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2_grpc as dcb_grpc
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc
from tests.support.sidecar import free_port

SUCCESS, RETRY, DROP = 0, 1, 2

#: Decides the answer to one delivery: a status number, or raises to fail the call.
Behaviour = Callable[[cb.TopicEventRequest], int]


def always_success(_: cb.TopicEventRequest) -> int:
    return SUCCESS


@dataclass
class CallbackApp(cb_grpc.AppCallbackServicer):
    subscriptions: list[tuple[str, str, dict[str, str]]]
    behaviour: Behaviour = always_success
    port: int = field(default_factory=free_port)
    #: Every delivery, whatever the answer.
    received: list[cb.TopicEventRequest] = field(default_factory=list)
    #: Payloads answered SUCCESS, with their count (duplicates > 1).
    succeeded: Counter[bytes] = field(default_factory=Counter)
    list_calls: int = 0
    #: Seconds each delivery takes (a slow app), so events are in flight when a test strikes.
    delay: float = 0.0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: grpc.aio.Server | None = None

    async def ListTopicSubscriptions(
        self, request: empty_pb2.Empty, context: object
    ) -> cb.ListTopicSubscriptionsResponse:
        self.list_calls += 1
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[cb.TopicSubscription(pubsub_name=p, topic=t, metadata=m) for p, t, m in self.subscriptions]
        )

    async def OnTopicEvent(self, request: cb.TopicEventRequest, context: object) -> cb.TopicEventResponse:
        self.received.append(request)
        async with self.changed:
            self.changed.notify_all()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.behaviour(request)
        if status == SUCCESS:
            self.succeeded[request.data] += 1
            async with self.changed:
                self.changed.notify_all()
        return cb.TopicEventResponse(status=status)  # type: ignore[arg-type]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), within)

    async def start(self) -> CallbackApp:
        self._server = grpc.aio.server()
        cb_grpc.add_AppCallbackServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


App = TypeVar("App", CallbackApp, "BulkCallbackApp")


@contextlib.asynccontextmanager
async def running_app(app: App) -> AsyncIterator[App]:
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


#: Dapr's bulk settings of a subscription, as an app lists them: (maxMessagesCount, maxAwaitDurationMs).
BulkSettings = tuple[int, int]


@dataclass
class BulkCallbackApp(dcb_grpc.AppCallbackServicer, dcb_grpc.AppCallbackAlphaServicer):  # type: ignore[misc]
    """A Dapr gRPC app taking its events in batches (OnBulkTopicEvent, and AppCallbackAlpha's
    OnBulkTopicEventAlpha1 when `alpha_only`), recording what it receives as CallbackApp does:
    each entry is answered by `behaviour` (an exception: RETRY, as Dapr's SDK answers)."""

    subscriptions: list[tuple[str, str, dict[str, str]]]
    behaviour: Behaviour = always_success
    bulk: BulkSettings = (100, 1000)
    alpha_only: bool = False
    #: topic -> its subscription's dead-letter topic.
    dead_letter_topics: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    received: list[cb.TopicEventRequest] = field(default_factory=list)
    succeeded: Counter[bytes] = field(default_factory=Counter)
    #: The entries of each bulk request, as they came.
    batches: list[list[dcb.TopicEventBulkRequestEntry]] = field(default_factory=list)
    requests: list[dcb.TopicEventBulkRequest] = field(default_factory=list)
    list_calls: int = 0
    #: Seconds each bulk request takes (a slow app).
    delay: float = 0.0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: grpc.aio.Server | None = None

    async def ListTopicSubscriptions(
        self, request: empty_pb2.Empty, context: object
    ) -> dcb.ListTopicSubscriptionsResponse:
        self.list_calls += 1
        async with self.changed:
            self.changed.notify_all()
        count, wait = self.bulk
        settings = dcb.BulkSubscribeConfig(enabled=True, max_messages_count=count, max_await_duration_ms=wait)
        return dcb.ListTopicSubscriptionsResponse(
            subscriptions=[
                dcb.TopicSubscription(
                    pubsub_name=p,
                    topic=t,
                    metadata=m,
                    bulk_subscribe=settings,
                    dead_letter_topic=self.dead_letter_topics.get(t, ""),
                )
                for p, t, m in self.subscriptions
            ]
        )

    async def OnBulkTopicEvent(self, request: dcb.TopicEventBulkRequest, context: Any) -> dcb.TopicEventBulkResponse:
        if self.alpha_only:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "OnBulkTopicEvent")
        return await self._bulk(request)

    async def OnBulkTopicEventAlpha1(
        self, request: dcb.TopicEventBulkRequest, context: object
    ) -> dcb.TopicEventBulkResponse:
        return await self._bulk(request)

    async def _bulk(self, request: dcb.TopicEventBulkRequest) -> dcb.TopicEventBulkResponse:
        events = [_entry_event(request, entry) for entry in request.entries]
        self.requests.append(request)
        self.batches.append(list(request.entries))
        self.received.extend(events)
        async with self.changed:
            self.changed.notify_all()
        if self.delay:
            await asyncio.sleep(self.delay)
        statuses = []
        for entry, event in zip(request.entries, events, strict=True):
            try:
                status = self.behaviour(event)
            except Exception:
                status = RETRY
            if status == SUCCESS:
                self.succeeded[event.data] += 1
            statuses.append(dcb.TopicEventBulkResponseEntry(entry_id=entry.entry_id, status=status))  # type: ignore[arg-type]
        async with self.changed:
            self.changed.notify_all()
        return dcb.TopicEventBulkResponse(statuses=statuses)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), within)

    async def start(self) -> BulkCallbackApp:
        self._server = grpc.aio.server()
        for add in (dcb_grpc.add_AppCallbackServicer_to_server, dcb_grpc.add_AppCallbackAlphaServicer_to_server):
            add(self, self._server)  # type: ignore[no-untyped-call]
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


def _entry_event(request: dcb.TopicEventBulkRequest, entry: dcb.TopicEventBulkRequestEntry) -> cb.TopicEventRequest:
    """A bulk entry as the one-event request a behaviour answers."""
    if entry.HasField("cloud_event"):
        ce = entry.cloud_event
        return cb.TopicEventRequest(
            id=ce.id,
            source=ce.source,
            type=ce.type,
            spec_version=ce.spec_version,
            data_content_type=ce.data_content_type,
            data=ce.data,
            topic=request.topic,
            pubsub_name=request.pubsub_name,
        )
    return cb.TopicEventRequest(
        id=entry.entry_id, data=entry.bytes, data_content_type=entry.content_type, topic=request.topic
    )
