"""A pluggable pub/sub broker for the suites: Dapr's PubSub service served by a plain grpc.aio
server on a Unix socket, with reflection on, in a process of its own
(`python -m tests.contract.pubsub.pluggable_broker SOCKET`).

Each topic is a log kept in memory; each consumer group (the subscription's `consumerID`)
reads it from its start (so a group misses nothing published before it subscribed), shares its
messages among the group's streams, and gets back what was nacked (`ack_error`) or left
unanswered by a stream that ended.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from layotto_proto.dapr._pool import POOL
from layotto_proto.dapr.proto.components.v1 import common_pb2, pubsub_pb2, pubsub_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]
_ids = itertools.count(1)


@dataclass(frozen=True)
class Entry:
    id: str
    topic: str
    data: bytes
    metadata: dict[str, str]


@dataclass
class Group:
    """One consumer group of one topic: how far it read the log, and what comes again."""

    log: list[Entry]
    offset: int = 0
    again: collections.deque[Entry] = field(default_factory=collections.deque)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def ready(self) -> bool:
        return bool(self.again) or self.offset < len(self.log)

    async def take(self) -> Entry:
        async with self.changed:
            await self.changed.wait_for(self.ready)
            if self.again:
                return self.again.popleft()
            self.offset += 1
            return self.log[self.offset - 1]

    async def give_back(self, entries: list[Entry]) -> None:
        async with self.changed:
            self.again.extend(entries)
            self.changed.notify_all()

    async def wake(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class Broker(pubsub_pb2_grpc.PubSubServicer):
    def __init__(self) -> None:
        self.logs: dict[str, list[Entry]] = collections.defaultdict(list)
        self.groups: dict[tuple[str, str], Group] = {}

    def group(self, topic: str, name: str) -> Group:
        key = (topic, name)
        if key not in self.groups:
            self.groups[key] = Group(self.logs[topic])
        return self.groups[key]

    async def Init(self, request: pubsub_pb2.PubSubInitRequest, context: Ctx) -> pubsub_pb2.PubSubInitResponse:
        return pubsub_pb2.PubSubInitResponse()

    async def Features(self, request: common_pb2.FeaturesRequest, context: Ctx) -> common_pb2.FeaturesResponse:
        return common_pb2.FeaturesResponse(features=[])

    async def Ping(self, request: common_pb2.PingRequest, context: Ctx) -> common_pb2.PingResponse:
        return common_pb2.PingResponse()

    async def Publish(self, request: pubsub_pb2.PublishRequest, context: Ctx) -> pubsub_pb2.PublishResponse:
        entry = Entry(str(next(_ids)), request.topic, request.data, dict(request.metadata))
        self.logs[request.topic].append(entry)
        for (topic, _), group in list(self.groups.items()):
            if topic == request.topic:
                await group.wake()
        return pubsub_pb2.PublishResponse()

    async def PullMessages(
        self, requests: AsyncIterator[pubsub_pb2.PullMessagesRequest], context: Ctx
    ) -> AsyncIterator[pubsub_pb2.PullMessagesResponse]:
        first = await anext(requests)
        group = self.group(first.topic.name, first.topic.metadata.get("consumerID", ""))
        unanswered: dict[str, Entry] = {}

        async def answers() -> None:
            with contextlib.suppress(Exception):  # the stream ended: what is unanswered goes back
                async for answer in requests:
                    entry = unanswered.pop(answer.ack_message_id, None)
                    if entry is not None and answer.HasField("ack_error"):
                        await group.give_back([entry])

        reading = asyncio.create_task(answers())
        taking: asyncio.Future[Entry] | None = None
        try:
            while not reading.done():
                taking = asyncio.ensure_future(group.take())
                await asyncio.wait({taking, reading}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    break
                entry, taking = taking.result(), None
                unanswered[entry.id] = entry
                yield pubsub_pb2.PullMessagesResponse(
                    data=entry.data, topic_name=entry.topic, metadata=entry.metadata, id=entry.id
                )
        finally:
            reading.cancel()
            back = list(unanswered.values())
            if taking is not None:
                taking.cancel()
                with contextlib.suppress(asyncio.CancelledError):  # taken before it was cancelled
                    back.append(await taking)
            await group.give_back(back)


SERVICES = [pubsub_pb2.DESCRIPTOR.services_by_name["PubSub"].full_name, reflection.SERVICE_NAME]


async def start(socket: str) -> grpc.aio.Server:
    """The broker, serving `socket` (in this process: the caller stops the server)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", -1)])
    pubsub_pb2_grpc.add_PubSubServicer_to_server(Broker(), server)
    reflection.enable_server_reflection(SERVICES, server, pool=POOL)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    return server


async def serve(socket: str) -> None:
    from tests.contract.pluggable_process import parent_gone

    server = await start(socket)
    await parent_gone()
    await server.stop(None)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
