"""A pub/sub broker served by a pluggable component (Dapr's PubSub service), mapped as daprd
maps it (dapr/dapr pkg/components/pubsub/pluggable.go).

A subscription is one PullMessages stream: its first request names the topic (with the
subscription's metadata and its consumer group as `consumerID`), the component streams the
messages, and each is answered on the stream once handled: an ack, or an `ack_error` (a nack,
the component delivers it again). Where daprd lets a broken stream go, this one is opened
again, with a growing pause, until the subscription is closed: a component that restarts gets
its subscribers back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import grpc

from layotto.components.base import ComponentContext, Metadata
from layotto.components.pluggable.connection import (
    INIT_TIMEOUT,
    PING_TIMEOUT,
    Connection,
    features_of,
    properties,
)
from layotto.components.pluggable.discovery import PUBSUB
from layotto.components.pubsub._consumer import InFlight, OpenSubscriptions, backoff_sleep, call_handler
from layotto.components.pubsub.base import CONSUMER_ID, Handler, Message, PubSub, PubSubFeature, subscribe_options
from layotto.errors import ComponentError
from layotto_proto.dapr.proto.components.v1 import common_pb2
from layotto_proto.dapr.proto.components.v1 import pubsub_pb2 as pb

log = logging.getLogger("layotto.pluggable")

#: Dapr's pub/sub features (MESSAGE_TTL, SUBSCRIBE_WILDCARDS, BULK_PUBLISH) are none of this
#: block's: delayed publishing and bulk reads have no place in the protocol.
FEATURES: Mapping[str, PubSubFeature] = {}

_Stream = grpc.aio.StreamStreamCall[Any, pb.PullMessagesResponse]


class _Pull:
    """One subscription: a PullMessages stream, opened again whenever it ends, until closed."""

    def __init__(self, owner: PluggablePubSub, topic: str, metadata: dict[str, str], handler: Handler, limit: int):
        self.owner = owner
        self.topic = topic
        self.handler = handler
        self.inflight = InFlight(limit)
        self._first = pb.PullMessagesRequest(topic=pb.Topic(name=topic, metadata=metadata))
        self._call: _Stream | None = None
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._call = await self._open()
        self._task = asyncio.create_task(self._loop(), name=f"pluggable-pull-{self.topic}")

    async def _open(self) -> _Stream:
        conn = self.owner.conn
        call = conn.stream(PUBSUB, "PullMessages", pb.PullMessagesResponse)
        try:
            await call.write(self._first)
        except grpc.aio.AioRpcError as exc:
            raise conn.failure(exc, "PullMessages") from None
        except asyncio.InvalidStateError:  # the call ended before the write: its status says why
            raise conn.error(await call.code(), await call.details(), "PullMessages") from None
        return call

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                if self._call is None:
                    self._call = await self._open()
                call = self._call
                async for reply in call:
                    failures = 0
                    self.inflight.start(self._handle(call, reply))
                    # At most `limit` messages handled at once: the next is read once one is done.
                    await self.inflight.wait_free()
                why = "the component ended the stream"
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                why = str(self.owner.conn.failure(exc, "PullMessages"))
            except ComponentError as exc:
                why = str(exc)
            log.warning("subscription to %s of %s stopped: %s; subscribing again", self.topic, self.owner.what, why)
            if self._call is not None:
                self._call.cancel()
                self._call = None
            await backoff_sleep(failures)
            failures += 1

    async def _handle(self, call: _Stream, reply: pb.PullMessagesResponse) -> None:
        topic = reply.topic_name or self.topic
        message = Message(topic=topic, data=reply.data, metadata=dict(reply.metadata), id=reply.id)
        ok = await call_handler(lambda: self.handler(message))
        answer = pb.PullMessagesRequest(ack_message_id=reply.id)
        if not ok:
            answer.ack_error.message = "the message was not handled; deliver it again"
        async with self._writing:
            if call.done():  # the stream broke meanwhile: the component delivers it again
                return
            try:
                await call.write(answer)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                log.debug("answering message %s of topic %s: %r", reply.id, self.topic, exc)

    async def close(self) -> None:
        self.owner.subscriptions.discard(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.inflight.cancel()
        if self._call is not None:
            self._call.cancel()
            self._call = None


class PluggablePubSub(PubSub):
    """The broker of a component process on `socket`."""

    def __init__(self, socket: str, type_name: str, services: frozenset[str]) -> None:
        self.type_name = type_name
        self.services = services
        self.conn = Connection(socket, "pubsub")
        self.subscriptions = OpenSubscriptions[_Pull]()
        self.features = frozenset()
        self._metadata: Metadata = Metadata()
        #: The features the component reports, by Dapr's names.
        self.reported_features: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        return self.conn.what

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._metadata = metadata
        self.conn.open(context.name)
        request = pb.PubSubInitRequest(metadata=common_pb2.MetadataRequest(properties=properties(metadata)))
        await self.conn.unary(PUBSUB, "Init", request, pb.PubSubInitResponse, within=INIT_TIMEOUT)
        reply = await self.conn.unary(
            PUBSUB, "Features", common_pb2.FeaturesRequest(), common_pb2.FeaturesResponse, within=INIT_TIMEOUT
        )
        self.reported_features = tuple(reply.features)
        self.features = features_of(reply.features, FEATURES, self.what)

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        request = pb.PublishRequest(data=data, pubsub_name=self.context.name, topic=topic, metadata=dict(metadata))
        await self.conn.unary(PUBSUB, "Publish", request, pb.PublishResponse)

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> _Pull:
        options = subscribe_options(metadata, self._metadata, self.context.app_id)
        wanted = {k: v for k, v in metadata.items() if k.lower() != CONSUMER_ID.lower()}
        wanted[CONSUMER_ID] = options.consumer_id
        subscription = _Pull(self, topic, wanted, handler, options.max_concurrency)
        await subscription.start()
        return self.subscriptions.add(subscription)

    async def ping(self) -> None:
        await self.conn.unary(PUBSUB, "Ping", common_pb2.PingRequest(), common_pb2.PingResponse, within=PING_TIMEOUT)

    async def close(self) -> None:
        await self.subscriptions.close_all()
        await self.conn.close()
