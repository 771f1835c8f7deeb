"""A test app: an AppCallback gRPC server on a free port, recording what it receives."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf import empty_pb2

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


@contextlib.asynccontextmanager
async def running_app(app: CallbackApp) -> AsyncIterator[CallbackApp]:
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
