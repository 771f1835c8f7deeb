"""NATS JetStream pub/sub (`nats`, also `jetstream`), with durable pull consumers.

- Each topic is a subject; it is stored in the stream named by `streamName`, else in the stream
  that already captures the subject, else in a stream `layotto-<topic>` created on first use.
- A consumer group is a durable consumer (`durableName`, else consumerID): every sidecar of the
  group pulls from it, so they share the messages; another group gets every message.
- Ack on success; nack = NAK with a delay; a sidecar that dies leaves its messages unacked and
  JetStream redelivers them after `ackWait`. `maxDeliver` bounds redeliveries (default unlimited).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

import nats
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from layotto.components.base import ComponentContext, Metadata
from layotto.components.pubsub._consumer import InFlight, OpenSubscriptions, backoff_sleep, call_handler
from layotto.components.pubsub.base import Handler, Message, PubSub, subscribe_options
from layotto.errors import BackendUnavailableError, ComponentError

log = logging.getLogger("layotto.pubsub.nats")

_UNAVAILABLE = (ConnectionClosedError, NoRespondersError, NoServersError, NatsTimeoutError, TimeoutError, OSError)


def _name(text: str) -> str:
    """Stream and consumer names may not contain '.', '*', '>', spaces or path separators."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class _PullSubscription:
    def __init__(self, owner: JetStreamPubSub, topic: str, psub: Any, handler: Handler, limit: int) -> None:
        self.owner = owner
        self.topic = topic
        self.psub = psub
        self.handler = handler
        self.inflight = InFlight(limit)
        self.task = asyncio.create_task(self._fetch_loop(), name=f"nats-fetch-{topic}")

    async def _fetch_loop(self) -> None:
        failures = 0
        while True:
            try:
                count = await self.inflight.wait_free()
                try:
                    batch = await self.psub.fetch(count, timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    continue
                failures = 0
                for msg in batch:
                    self.inflight.spawn(functools.partial(self._handle, msg))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection reconnects by itself; keep pulling
                log.warning("fetching from %s failed: %r", self.topic, exc)
                await backoff_sleep(failures)
                failures += 1

    async def _handle(self, msg: Any) -> None:
        meta = msg.metadata
        message = Message(
            topic=self.topic,
            data=bytes(msg.data),
            metadata={k: str(v) for k, v in (msg.headers or {}).items()},
            id=str(meta.sequence.stream),
            delivery_count=int(meta.num_delivered),
        )
        ok = await call_handler(lambda: self.handler(message))
        try:
            if ok:
                await msg.ack()
            else:
                await msg.nak(delay=self.owner.redeliver_delay)
        except Exception as exc:  # an ack lost is a redelivery after ackWait, not a loss
            log.warning("ack of %s/%s failed: %r", self.topic, message.id, exc)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.inflight.cancel()
        try:
            await self.psub.unsubscribe()
        except Exception as exc:
            log.debug("unsubscribe from %s: %r", self.topic, exc)
        self.owner.subscriptions.discard(self)


class JetStreamPubSub(PubSub):
    metadata_keys = (
        "natsURL",
        "streamName",
        "ackWait",
        "maxDeliver",
        "redeliverInterval",
        "storage",
        "connectTimeout",
        "durableName",
        "consumerID",
        "maxConcurrency",
    )

    def __init__(self) -> None:
        self.subscriptions = OpenSubscriptions[_PullSubscription]()
        self._streams: dict[str, str] = {}
        self._stream_lock = asyncio.Lock()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.metadata = metadata
        self.url = metadata.get_str("natsURL", "nats://127.0.0.1:4222")
        self.stream_name = metadata.get_str("streamName")
        self.ack_wait = metadata.get_duration("ackWait", 30.0)
        self.max_deliver = metadata.get_int("maxDeliver", 0)
        self.redeliver_delay = metadata.get_duration("redeliverInterval", 0.5)
        self.storage = (
            js_api.StorageType.MEMORY
            if metadata.get_str("storage", "file").lower() == "memory"
            else js_api.StorageType.FILE
        )
        try:
            self.nc = await nats.connect(
                self.url,
                name=f"layotto-{context.app_id or context.name}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=metadata.get_duration("connectTimeout", 5.0),
                allow_reconnect=True,
            )
        except Exception as exc:
            raise BackendUnavailableError(f"nats at {self.url} is unavailable: {exc}") from exc
        self.js = self.nc.jetstream()

    async def ping(self) -> None:
        if not self.nc.is_connected:
            raise BackendUnavailableError(f"nats at {self.url} is not connected")

    async def _stream_for(self, topic: str) -> str:
        if self.stream_name:
            return self.stream_name
        known = self._streams.get(topic)
        if known:
            return known
        async with self._stream_lock:
            if topic in self._streams:
                return self._streams[topic]
            try:
                name = await self.js.find_stream_name_by_subject(topic)
            except NotFoundError:
                name = f"layotto-{_name(topic)}"
                try:
                    await self.js.add_stream(name=name, subjects=[topic], storage=self.storage)
                except APIError as exc:
                    # Another sidecar created it first.
                    if exc.err_code != 10058:
                        raise ComponentError(f"cannot create stream {name} for {topic}: {exc}") from exc
            self._streams[topic] = name
            return name

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        if not self.nc.is_connected:
            # While reconnecting nats-py would buffer the message and wait out the ack timeout.
            raise BackendUnavailableError(f"nats at {self.url} is not connected")
        try:
            stream = await self._stream_for(topic)
            await self.js.publish(topic, data, stream=stream, timeout=5.0)
        except _UNAVAILABLE as exc:
            raise BackendUnavailableError(f"nats at {self.url} is unavailable: {exc!r}") from exc
        except APIError as exc:
            raise ComponentError(f"jetstream refused the message: {exc}") from exc

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> _PullSubscription:
        options = subscribe_options(metadata, self.metadata, self.context.app_id)
        durable = metadata.get("durableName") or self.metadata.get_str("durableName") or options.consumer_id
        if self.stream_name:
            durable = f"{durable}-{topic}"  # one shared stream: a consumer per (group, topic)
        config = js_api.ConsumerConfig(
            durable_name=_name(durable),
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver or -1,
            max_ack_pending=max(1000, options.max_concurrency * 4),
            filter_subject=topic,
        )
        try:
            stream = await self._stream_for(topic)
            psub = await self.js.pull_subscribe(topic, durable=_name(durable), stream=stream, config=config)
        except _UNAVAILABLE as exc:
            raise BackendUnavailableError(f"nats at {self.url} is unavailable: {exc!r}") from exc
        subscription = _PullSubscription(self, topic, psub, handler, options.max_concurrency)
        return self.subscriptions.add(subscription)

    async def close(self) -> None:
        await self.subscriptions.close_all()
        try:
            await self.nc.close()
        except Exception as exc:
            log.debug("closing nats connection: %r", exc)
