"""Redis Streams pub/sub (`redis`), as Dapr's component lays data out.

- publish: XADD <topic> [MAXLEN ~ maxLenApprox] * data <bytes>
- a consumer group per consumerID (created at "0", MKSTREAM); each subscriber is one consumer
  of the group with a unique name, reading with XREADGROUP and acking with XACK on success.
- a nacked message stays pending; every `redeliverInterval` (60 s) each subscriber claims
  (XAUTOCLAIM) the group's entries idle for more than `processingTimeout` (15 s; a failed
  handler, or a consumer that died) and handles them again. Dapr's defaults; 0 turns it off.

Cost per message is what limits throughput, so: publishes, acks and the other short commands
share one automatically pipelined connection (_drivers/redis_autopipe); each subscription reads with
a blocking XREADGROUP on a connection of its own (COUNT = free handler slots, replies parsed
raw); acks of messages handled meanwhile go out together as one XACK.

Bulk subscribe (PubSubFeature.BULK_SUBSCRIBE): the reader asks XREADGROUP for a whole batch
(COUNT = what the batch still lacks); once it has a first entry it asks again without blocking,
every `_poll_interval` of the window, until the batch is full or its window since the first
entry has passed. (Not with BLOCK: Redis times blocked reads out on its own clock, `hz`, 100 ms
by default, far coarser than a window of a few ms.) The batch's acks are one XACK. Reclaimed
entries go in batches too.

On a Redis Cluster a topic is one stream key, so it and its consumer groups live on the master
of its slot: publishes and acks go to that node's pipelined connection, and a subscription's
reader connects to that node (and follows the stream when its slot moves). Behind Sentinel
every connection is to the current master.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from redis.exceptions import ResponseError

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.delay_queue.base import DelayScheduler
from layotto.components.delay_queue.redis import RedisScheduler
from layotto.components.pubsub import base as pubsub
from layotto.components.pubsub._consumer import Consumer, InFlight, OpenSubscriptions, backoff_sleep, call_bulk_handler

log = logging.getLogger("layotto.pubsub.redis")

#: How long one XREADGROUP waits for entries before it is sent again.
READ_BLOCK_MS = 1000
#: Attempts to send a batch of acks before its entries are left pending (reclaimed later).
ACK_ATTEMPTS = 5
#: Acks wait up to this long for others to go with them, unless this many are ready already.
ACK_DELAY = 0.002
ACK_BATCH = 64


def _poll_interval(options: pubsub.BulkOptions) -> float:
    """How often a filling batch asks for more: a tenth of its window, between 1 and 50 ms (a
    full batch waits that much at most; an idle window costs ten reads)."""
    return min(0.05, max(0.001, options.max_await / 10))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _data_field(fields: Any) -> bytes | None:
    """The `data` value of an entry: a dict (redis-py's parsed form) or a flat [k, v, ...] list."""
    if isinstance(fields, dict):
        value = fields.get(b"data")
        return None if value is None else bytes(value)
    if isinstance(fields, list):
        for i in range(0, len(fields) - 1, 2):
            if fields[i] == b"data":
                return bytes(fields[i + 1])
    return None


class _Bulk(NamedTuple):
    handler: pubsub.BulkHandler
    options: pubsub.BulkOptions


class _StreamSubscription(Consumer["RedisStreamsPubSub", _Bulk]):
    """One consumer of the group; `handler` takes each message, or `bulk` takes batches."""

    def __init__(
        self,
        owner: RedisStreamsPubSub,
        topic: str,
        group: str,
        handler: pubsub.Handler | None,
        limit: int,
        bulk: _Bulk | None = None,
    ) -> None:
        super().__init__(owner, topic, handler, bulk)
        self.client = owner.client
        self.group = group
        self.consumer = f"{group}-{uuid.uuid4().hex[:12]}"
        self.inflight = InFlight(limit)
        self.handling: set[str] = set()
        self.reader = owner.reader()
        self._acks: list[str] = []
        self._ack_ready = asyncio.Event()
        self._closing = False
        self.tasks = [
            asyncio.create_task(
                self._read_loop() if bulk is None else self._read_batches(bulk.options), name=f"redis-read-{topic}"
            ),
            asyncio.create_task(self._reclaim_loop(), name=f"redis-reclaim-{topic}"),
        ]
        self._acker = asyncio.create_task(self._ack_loop(), name=f"redis-ack-{topic}")

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.topic, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _take(self, entry_id: Any, fields: Any) -> None:
        message_id = _text(entry_id)
        if message_id in self.handling:
            return
        self.handling.add(message_id)
        self.inflight.start(self._handle(message_id, _data_field(fields)))

    async def _handle(self, message_id: str, data: bytes | None) -> None:
        assert self.handler is not None
        ok = False
        try:
            if data is None:
                log.warning("stream %s entry %s has no 'data' field; acked and skipped", self.topic, message_id)
                ok = True
            else:
                try:
                    ok = await self.handler(pubsub.Message(topic=self.topic, data=data, id=message_id))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("pubsub handler raised; the message will be redelivered")
        finally:
            self._settle(message_id, ok)

    def _settle(self, message_id: str, ok: bool) -> None:
        if ok:
            # Stays in `handling` until the ack is sent, so a reclaim cannot take it again.
            self._acks.append(message_id)
            self._ack_ready.set()
        else:
            self.handling.discard(message_id)

    def _take_batch(self, entries: list[tuple[str, bytes | None]]) -> None:
        fresh = [(message_id, data) for message_id, data in entries if message_id not in self.handling]
        if fresh:
            self.handling.update(message_id for message_id, _ in fresh)
            self.inflight.start(self._handle_batch(fresh), len(fresh))

    async def _handle_batch(self, entries: list[tuple[str, bytes | None]]) -> None:
        assert self.bulk is not None
        messages = [
            pubsub.Message(topic=self.topic, data=data, id=entry) for entry, data in entries if data is not None
        ]
        verdicts: list[bool] = []
        try:
            if messages:
                verdicts = await call_bulk_handler(self.bulk.handler, messages)
        finally:
            answered = iter(verdicts)
            for message_id, data in entries:
                if data is None:
                    log.warning("stream %s entry %s has no 'data' field; acked and skipped", self.topic, message_id)
                    self._settle(message_id, True)
                else:
                    # Cancelled before the handler answered: nothing to ack, all stay pending.
                    self._settle(message_id, next(answered, False))

    async def _ack_loop(self) -> None:
        # One XACK in flight per subscription: what is handled meanwhile goes in the next one.
        while True:
            await self._ack_ready.wait()
            if len(self._acks) < ACK_BATCH and not self._closing:
                # A moment more gathers the acks of messages finishing meanwhile: one XACK
                # (one write, one round trip) for several, at the cost of a later ack.
                await asyncio.sleep(ACK_DELAY)
            self._ack_ready.clear()
            ids, self._acks = self._acks, []
            if ids:
                await self._send_acks(ids)
            if self._closing and not self._acks:
                return

    async def _send_acks(self, ids: list[str]) -> None:
        try:
            for attempt in range(ACK_ATTEMPTS):
                try:
                    await self.client.xack(self.topic, self.group, *ids)
                    return
                except redis_driver.UNAVAILABLE as exc:
                    log.warning("XACK of %d entries on %s failed (%s); retrying", len(ids), self.topic, exc)
                    await backoff_sleep(attempt)
                except Exception as exc:  # a bug must not stop the acks of this subscription
                    log.warning("XACK on %s failed: %s; the entries stay pending", self.topic, exc)
                    return
            # Not acked: the entries stay pending and are handled again after processingTimeout.
        finally:
            self.handling.difference_update(ids)

    async def _read(self, count: int, block_ms: int | None) -> list[tuple[str, bytes | None]]:
        """New entries, up to `count`, waiting up to `block_ms` for the first (None: not at all)."""
        block = ("BLOCK", block_ms) if block_ms is not None else ()
        reply: Any = await self.reader.execute(
            "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count, *block, "STREAMS", self.topic, ">"
        )
        return [(_text(entry_id), _data_field(fields)) for _, entries in reply or () for entry_id, fields in entries]

    async def _read_batches(self, options: pubsub.BulkOptions) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            batch: list[tuple[str, bytes | None]] = []
            try:
                size = min(options.max_messages, await self.inflight.wait_free())
                batch = await self._read(size, READ_BLOCK_MS)
                failures = 0
                closes = loop.time() + options.max_await
                while batch and len(batch) < size:
                    more = await self._read(size - len(batch), None)
                    batch += more
                    left = closes - loop.time()
                    if left <= 0:
                        break
                    if len(batch) < size and not more:
                        await asyncio.sleep(min(left, _poll_interval(options)))
            except asyncio.CancelledError:
                batch = []  # closing: left pending, for the group's other consumers to claim
                raise
            except (*redis_driver.UNAVAILABLE, ResponseError) as exc:
                failures = await self._read_failed(exc, failures)
            finally:
                # What was read is this consumer's (pending) now: handed over even when a later
                # read of the batch failed.
                self._take_batch(batch)

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            try:
                count = await self.inflight.wait_free()
                reply: Any = await self.reader.execute(
                    "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
                    "BLOCK", READ_BLOCK_MS, "STREAMS", self.topic, ">",
                )  # fmt: skip
                failures = 0
                for _, entries in reply or ():
                    for entry_id, fields in entries:
                        self._take(entry_id, fields)
            except asyncio.CancelledError:
                raise
            except (*redis_driver.UNAVAILABLE, ResponseError) as exc:
                failures = await self._read_failed(exc, failures)

    async def _read_failed(self, exc: Exception, failures: int) -> int:
        """After a failed XREADGROUP: back off (unless the lost group was just recreated) and
        return the count of failures in a row."""
        if isinstance(exc, redis_driver.UNAVAILABLE):
            log.warning("redis unavailable while reading %s: %s", self.topic, exc)
        elif isinstance(exc, ResponseError) and await self._recovered(exc, "XREADGROUP"):
            return failures
        await backoff_sleep(failures)
        return failures + 1

    async def _recovered(self, exc: ResponseError, command: str) -> bool:
        """Recreate the consumer group when Redis lost it (True); else log the failure."""
        if "NOGROUP" in str(exc):
            await self._recreate_group()
            return True
        log.warning("%s on %s failed: %s", command, self.topic, exc)
        return False

    async def _recreate_group(self) -> None:
        try:
            await self.ensure_group()
        except (ResponseError, *redis_driver.UNAVAILABLE) as exc:
            log.warning("cannot recreate consumer group %s on %s: %s", self.group, self.topic, exc)
            await asyncio.sleep(1.0)

    async def _reclaim_loop(self) -> None:
        redelivery = self.owner.redelivery
        if not redelivery.enabled:
            return
        interval, idle_ms = redelivery.interval, redelivery.idle_ms
        while True:
            await asyncio.sleep(interval)
            try:
                start = "0-0"
                while True:
                    count = await self.inflight.wait_free()
                    if self.bulk is not None:
                        count = min(count, self.bulk.options.max_messages)
                    reply: Any = await self.client.xautoclaim(
                        self.topic, self.group, self.consumer, idle_ms, start_id=start, count=count
                    )
                    start = _text(reply[0])
                    claimed: list[tuple[str, bytes | None]] = []
                    for entry_id, fields in reply[1]:
                        if fields is None:
                            await self._send_acks([_text(entry_id)])
                        elif self.bulk is None:
                            self._take(entry_id, fields)
                        else:
                            claimed.append((_text(entry_id), _data_field(fields)))
                    self._take_batch(claimed)
                    if start == "0-0":
                        break
            except asyncio.CancelledError:
                raise
            except redis_driver.UNAVAILABLE as exc:
                log.warning("redis unavailable while reclaiming %s: %s", self.topic, exc)
            except ResponseError as exc:
                await self._recovered(exc, "XAUTOCLAIM")

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.reader.close()
        # Unfinished messages stay pending and are reclaimed by the group's other consumers.
        await self.inflight.cancel()
        # Acks of messages already handled still go out (bounded by the ack retries).
        self._closing = True
        self._ack_ready.set()
        await asyncio.gather(self._acker, return_exceptions=True)
        try:
            pending = await self.client.xpending_range(
                self.topic, self.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not pending:
                await self.client.xgroup_delconsumer(self.topic, self.group, self.consumer)
        except (ResponseError, *redis_driver.UNAVAILABLE):
            pass


class RedisStreamsPubSub(pubsub.PubSub):
    metadata_keys = (
        *redis_driver.METADATA_KEYS,
        "redeliverInterval",
        "processingTimeout",
        "maxLenApprox",
        "consumerID",
        "maxConcurrency",
        "delayQueueKey",
        "delayLease",
        "delayPollInterval",
    )
    features = frozenset({pubsub.PubSubFeature.DELAY, pubsub.PubSubFeature.BULK_SUBSCRIBE})
    client: redis_driver.Client

    def __init__(self) -> None:
        self.subscriptions = OpenSubscriptions[_StreamSubscription]()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.metadata = metadata
        self.settings = redis_driver.RedisSettings.from_metadata(metadata)
        self.address = self.settings.address
        self.client = redis_driver.connect(self.settings, autopipeline=True)
        self.redelivery = redis_driver.StreamRedelivery.from_metadata(metadata)
        self.max_len = metadata.get_int("maxLenApprox", 0)
        try:
            await self.client.ping()
        except redis_driver.UNAVAILABLE as exc:
            await self.client.aclose()
            raise redis_driver.unavailable(self.address, exc) from exc

    def delay_scheduler(self, name: str, metadata: Metadata) -> DelayScheduler:
        return RedisScheduler(self, name, metadata)

    def reader(self) -> redis_driver.Pipelined:
        """A connection of its own for one subscription's blocking XREADGROUP (opened on first
        use; on a cluster, to the node of the topic's slot); its read timeout leaves room for
        the block."""
        read_timeout = self.settings.read_timeout + READ_BLOCK_MS / 1000
        return redis_driver.pipelined(self.client, dataclasses.replace(self.settings, read_timeout=read_timeout))

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self.address, exc) from exc

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        try:
            if self.max_len:
                await self.client.xadd(topic, {"data": data}, maxlen=self.max_len, approximate=True)
            else:
                await self.client.xadd(topic, {"data": data})
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self.address, exc) from exc

    async def subscribe(self, topic: str, handler: pubsub.Handler, metadata: Mapping[str, str]) -> _StreamSubscription:
        options = pubsub.subscribe_options(metadata, self.metadata, self.context.app_id)
        await self._group(topic, options.consumer_id)
        subscription = _StreamSubscription(self, topic, options.consumer_id, handler, options.max_concurrency)
        return self.subscriptions.add(subscription)

    async def bulk_subscribe(
        self, topic: str, handler: pubsub.BulkHandler, metadata: Mapping[str, str], options: pubsub.BulkOptions
    ) -> _StreamSubscription:
        settings = pubsub.subscribe_options(metadata, self.metadata, self.context.app_id)
        await self._group(topic, settings.consumer_id)
        limit = pubsub.bulk_in_flight(options, settings.max_concurrency)
        subscription = _StreamSubscription(self, topic, settings.consumer_id, None, limit, _Bulk(handler, options))
        return self.subscriptions.add(subscription)

    async def _group(self, topic: str, group: str) -> None:
        try:
            await self.client.xgroup_create(topic, group, id="0", mkstream=True)
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self.address, exc) from exc
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def close(self) -> None:
        await self.subscriptions.close_all()
        await self.client.aclose()
