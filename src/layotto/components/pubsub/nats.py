"""NATS JetStream pub/sub (`nats`, also `jetstream`), with durable pull consumers.

- Each topic is a subject; it is stored in the stream named by `streamName`, else in the stream
  that already captures the subject, else in a stream `layotto-<topic>` created on first use.
- A consumer group is a durable consumer (`durableName`, else consumerID): every sidecar of the
  group pulls from it, so they share the messages; another group gets every message.
- Ack on success; nack = NAK with a delay; a sidecar that dies leaves its messages unacked and
  JetStream redelivers them after `ackWait`. `maxDeliver` bounds redeliveries (default unlimited).
- Bulk subscribe (PubSubFeature.BULK_SUBSCRIBE): a batch is one pull of n messages, pulled
  again for what it lacks until it is full or its window has passed; its acks are written
  together and leave in one flush (each message has its own ack subject: JetStream's only
  multi-message ack, AckAll, would ack other sidecars' messages of the group too).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import nats
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from layotto.components.base import ComponentContext, Metadata
from layotto.components.pubsub import base as pubsub
from layotto.components.pubsub._consumer import (
    Consumer,
    InFlight,
    OpenSubscriptions,
    backoff_sleep,
    call_bulk_handler,
    call_handler,
    stopping,
)
from layotto.config import tls
from layotto.errors import BackendUnavailableError, ComponentError
from layotto.tasks import stop_task

log = logging.getLogger("layotto.pubsub.nats")

_UNAVAILABLE = (ConnectionClosedError, NoRespondersError, NoServersError, NatsTimeoutError, TimeoutError, OSError)


def _name(text: str) -> str:
    """Stream and consumer names may not contain '.', '*', '>', spaces or path separators."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


#: Dapr's client certificate keys (files, or PEM text here too), and this runtime's CA key.
_TLS_KEYS = ("tls_client_cert", "tls_client_key", "tls_ca_cert")


def _tls(metadata: Metadata, url: str) -> ssl.SSLContext | None:
    """The client's TLS: with a `tls://` URL or any of _TLS_KEYS; the server's certificate is
    verified against `tls_ca_cert` (the system's CAs without it) and the host. Without either
    the client still upgrades when the server requires TLS (with the system's CAs)."""
    where = f"{metadata.where}.metadata" if metadata.where else "metadata"
    cert, key, ca = (
        tls.pem(metadata.get_str(name), what, f"{where}.{name}")
        for name, what in zip(_TLS_KEYS, ("certificate", "private key", "CA certificates"), strict=True)
    )
    if cert is None and key is None and ca is None:
        return tls.client_context(tls.Material()) if "tls://" in url else None
    return tls.client_context(tls.load_material(cert, key, ca))


class _PullSubscription(Consumer["JetStreamPubSub", tuple[pubsub.BulkHandler, pubsub.BulkOptions]]):
    """A pull consumer; `handler` takes each message, or `bulk` (with its options) batches."""

    def __init__(
        self,
        owner: JetStreamPubSub,
        topic: str,
        psub: Any,
        handler: pubsub.Handler | None,
        limit: int,
        bulk: tuple[pubsub.BulkHandler, pubsub.BulkOptions] | None = None,
    ) -> None:
        super().__init__(owner, topic, handler, bulk)
        self.psub = psub
        self.inflight = InFlight(limit)
        loop = self._fetch_loop() if bulk is None else self._fetch_batches(*bulk)
        self.task = asyncio.create_task(loop, name=f"nats-fetch-{topic}")

    async def _fetch_loop(self) -> None:
        failures = 0
        while True:
            try:
                count = await self.inflight.wait_free()
                try:
                    batch = await self.psub.fetch(count, timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    if stopping():
                        raise asyncio.CancelledError from None
                    continue
                failures = 0
                for msg in batch:
                    self.inflight.spawn(functools.partial(self._handle, msg))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection reconnects by itself; keep pulling
                if stopping():
                    raise asyncio.CancelledError from None
                log.warning("fetching from %s failed: %r", self.topic, exc)
                await backoff_sleep(failures)
                failures += 1

    async def _fetch_batches(self, handler: pubsub.BulkHandler, options: pubsub.BulkOptions) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            batch: list[Any] = []
            try:
                size = min(options.max_messages, await self.inflight.wait_free())
                try:
                    batch = await self.psub.fetch(size, timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    if stopping():
                        raise asyncio.CancelledError from None
                    continue
                failures = 0
                closes = loop.time() + options.max_await
                # A pull's expiry must be positive: what is left under 5 ms is not worth one.
                while len(batch) < size and (left := closes - loop.time()) > 0.005:
                    try:
                        batch += await self.psub.fetch(size - len(batch), timeout=min(left, 1.0))
                    except (NatsTimeoutError, TimeoutError):
                        if stopping():
                            raise asyncio.CancelledError from None
            except asyncio.CancelledError:
                batch = []  # closing: unacked, JetStream redelivers them after ackWait
                raise
            except Exception as exc:  # the connection reconnects by itself; keep pulling
                if stopping():
                    batch = []
                    raise asyncio.CancelledError from None
                log.warning("fetching from %s failed: %r", self.topic, exc)
                await backoff_sleep(failures)
                failures += 1
            finally:
                if batch:
                    self.inflight.start(self._handle_batch(handler, batch), len(batch))

    def _message(self, msg: Any) -> pubsub.Message:
        meta = msg.metadata
        return pubsub.Message(
            topic=self.topic,
            data=bytes(msg.data),
            metadata={k: str(v) for k, v in (msg.headers or {}).items()},
            id=str(meta.sequence.stream),
            delivery_count=int(meta.num_delivered),
        )

    async def _handle(self, msg: Any) -> None:
        assert self.handler is not None
        handler = self.handler
        message = self._message(msg)
        await self._settle(msg, await call_handler(lambda: handler(message)))

    async def _handle_batch(self, handler: pubsub.BulkHandler, batch: Sequence[Any]) -> None:
        verdicts = await call_bulk_handler(handler, [self._message(msg) for msg in batch])
        for msg, ok in zip(batch, verdicts, strict=True):
            await self._settle(msg, ok)

    async def _settle(self, msg: Any, ok: bool) -> None:
        try:
            if ok:
                await msg.ack()
            else:
                await msg.nak(delay=self.owner.redeliver_delay)
        except Exception as exc:  # an ack lost is a redelivery after ackWait, not a loss
            log.warning("ack of %s/%s failed: %r", self.topic, msg.metadata.sequence.stream, exc)

    async def _stop(self) -> None:
        try:
            await stop_task(self.task)
        except Exception as exc:
            log.debug("the fetch task of %s ended with %r", self.topic, exc)
        await self.inflight.cancel()
        try:
            await self.psub.unsubscribe()
        except Exception as exc:
            log.debug("unsubscribe from %s: %r", self.topic, exc)


class JetStreamPubSub(pubsub.PubSub):
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
        *_TLS_KEYS,
    )
    features = frozenset({pubsub.PubSubFeature.BULK_SUBSCRIBE})

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
        url, errors = self.url, list[Exception]()

        async def on_error(exc: Exception) -> None:  # one line, not nats-py's traceback per attempt
            errors.append(exc)
            log.warning("nats at %s: %r", url, exc)

        connect_timeout = metadata.get_duration("connectTimeout", 5.0)
        try:
            # A bounded first connection: nats-py never gives up one that may retry for ever, and
            # after a failed TLS handshake (a server refusing this client, or one it does not
            # trust) it waits for good for the socket to close: the wait is cut short here.
            self.nc = await asyncio.wait_for(
                nats.connect(
                    self.url,
                    name=f"layotto-{context.app_id or context.name}",
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.5,
                    connect_timeout=connect_timeout,
                    allow_reconnect=True,
                    tls=_tls(metadata, self.url),
                    error_cb=on_error,
                ),
                2 * connect_timeout + 1.0,
            )
        except Exception as exc:
            reason = errors[-1] if errors and isinstance(exc, TimeoutError) else exc
            raise BackendUnavailableError(f"nats at {self.url} is unavailable: {reason!r}") from exc
        # Once connected, reconnect for as long as it takes.
        self.nc.options["max_reconnect_attempts"] = -1
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

    async def subscribe(self, topic: str, handler: pubsub.Handler, metadata: Mapping[str, str]) -> _PullSubscription:
        options = pubsub.subscribe_options(metadata, self.metadata, self.context.app_id)
        psub = await self._pull_consumer(topic, metadata, options, options.max_concurrency)
        subscription = _PullSubscription(self, topic, psub, handler, options.max_concurrency)
        return self.subscriptions.add(subscription)

    async def bulk_subscribe(
        self, topic: str, handler: pubsub.BulkHandler, metadata: Mapping[str, str], options: pubsub.BulkOptions
    ) -> _PullSubscription:
        settings = pubsub.subscribe_options(metadata, self.metadata, self.context.app_id)
        limit = pubsub.bulk_in_flight(options, settings.max_concurrency)
        psub = await self._pull_consumer(topic, metadata, settings, limit)
        subscription = _PullSubscription(self, topic, psub, None, limit, (handler, options))
        return self.subscriptions.add(subscription)

    async def _pull_consumer(
        self, topic: str, metadata: Mapping[str, str], options: pubsub.SubscribeOptions, in_flight: int
    ) -> Any:
        durable = metadata.get("durableName") or self.metadata.get_str("durableName") or options.consumer_id
        if self.stream_name:
            durable = f"{durable}-{topic}"  # one shared stream: a consumer per (group, topic)
        config = js_api.ConsumerConfig(
            durable_name=_name(durable),
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver or -1,
            max_ack_pending=max(1000, in_flight * 4),
            filter_subject=topic,
        )
        try:
            stream = await self._stream_for(topic)
            return await self.js.pull_subscribe(topic, durable=_name(durable), stream=stream, config=config)
        except _UNAVAILABLE as exc:
            raise BackendUnavailableError(f"nats at {self.url} is unavailable: {exc!r}") from exc

    async def close(self) -> None:
        await self.subscriptions.close_all()
        try:
            await self.nc.close()
        except Exception as exc:
            log.debug("closing nats connection: %r", exc)
