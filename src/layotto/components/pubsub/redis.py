"""Redis Streams pub/sub (`redis`), as Dapr's component lays data out.

- publish: XADD <topic> [MAXLEN ~ maxLenApprox] * data <bytes>
- a consumer group per consumerID (created at "0", MKSTREAM); each subscriber is one consumer
  of the group with a unique name, reading with XREADGROUP and acking with XACK on success.
- a nacked message stays pending; every `redeliverInterval` each subscriber claims (XAUTOCLAIM)
  the group's entries idle for more than `processingTimeout` (a failed handler, or a consumer
  that died) and handles them again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from layotto.components import redisclient
from layotto.components.base import ComponentContext, Metadata
from layotto.components.pubsub._consumer import InFlight, backoff_sleep, call_handler
from layotto.components.pubsub.base import Handler, Message, PubSub, subscribe_options

log = logging.getLogger("layotto.pubsub.redis")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _StreamSubscription:
    def __init__(self, owner: RedisStreamsPubSub, topic: str, group: str, handler: Handler, limit: int) -> None:
        self.owner = owner
        self.client = owner.client
        self.topic = topic
        self.group = group
        self.consumer = f"{group}-{uuid.uuid4().hex[:12]}"
        self.handler = handler
        self.inflight = InFlight(limit)
        self.handling: set[str] = set()
        self.tasks = [
            asyncio.create_task(self._read_loop(), name=f"redis-read-{topic}"),
            asyncio.create_task(self._reclaim_loop(), name=f"redis-reclaim-{topic}"),
        ]

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

        async def work() -> None:
            try:
                data = fields.get(b"data") if isinstance(fields, dict) else None
                if data is None:
                    log.warning("stream %s entry %s has no 'data' field; acked and skipped", self.topic, message_id)
                    ok = True
                else:
                    message = Message(topic=self.topic, data=bytes(data), id=message_id)
                    ok = await call_handler(lambda: self.handler(message))
                if ok:
                    await self._ack(message_id)
            finally:
                self.handling.discard(message_id)

        self.inflight.spawn(work)

    async def _ack(self, message_id: str) -> None:
        for attempt in range(5):
            try:
                async with self.owner.commands:
                    await self.client.xack(self.topic, self.group, message_id)
                return
            except redisclient.UNAVAILABLE as exc:
                log.warning("XACK %s on %s failed (%s); retrying", message_id, self.topic, exc)
                await backoff_sleep(attempt)
        # Not acked: the entry stays pending and is handled again after processingTimeout.

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            try:
                count = await self.inflight.wait_free()
                reply: Any = await self.client.xreadgroup(
                    self.group, self.consumer, {self.topic: ">"}, count=count, block=1000
                )
                failures = 0
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        self._take(entry_id, fields)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    await self._recreate_group()
                else:
                    log.warning("XREADGROUP on %s failed: %s", self.topic, exc)
                    await backoff_sleep(failures)
                    failures += 1
            except redisclient.UNAVAILABLE as exc:
                log.warning("redis unavailable while reading %s: %s", self.topic, exc)
                await backoff_sleep(failures)
                failures += 1

    async def _recreate_group(self) -> None:
        try:
            await self.ensure_group()
        except (ResponseError, *redisclient.UNAVAILABLE) as exc:
            log.warning("cannot recreate consumer group %s on %s: %s", self.group, self.topic, exc)
            await asyncio.sleep(1.0)

    async def _reclaim_loop(self) -> None:
        interval = self.owner.redeliver_interval
        if interval <= 0:
            return
        idle_ms = max(1, int(self.owner.processing_timeout * 1000))
        while True:
            await asyncio.sleep(interval)
            try:
                start = "0-0"
                while True:
                    count = await self.inflight.wait_free()
                    reply: Any = await self.client.xautoclaim(
                        self.topic, self.group, self.consumer, idle_ms, start_id=start, count=count
                    )
                    start = _text(reply[0])
                    for entry_id, fields in reply[1]:
                        if fields is None:
                            await self._ack(_text(entry_id))
                        else:
                            self._take(entry_id, fields)
                    if start == "0-0":
                        break
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    await self._recreate_group()
                else:
                    log.warning("XAUTOCLAIM on %s failed: %s", self.topic, exc)
            except redisclient.UNAVAILABLE as exc:
                log.warning("redis unavailable while reclaiming %s: %s", self.topic, exc)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # Unfinished messages stay pending and are reclaimed by the group's other consumers.
        await self.inflight.cancel()
        try:
            pending = await self.client.xpending_range(
                self.topic, self.group, min="-", max="+", count=1, consumername=self.consumer
            )
            if not pending:
                await self.client.xgroup_delconsumer(self.topic, self.group, self.consumer)
        except (ResponseError, *redisclient.UNAVAILABLE):
            pass
        self.owner.subscriptions.discard(self)


class RedisStreamsPubSub(PubSub):
    client: aioredis.Redis

    def __init__(self) -> None:
        self.subscriptions: set[_StreamSubscription] = set()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.metadata = metadata
        self.address = metadata.get_str("redisHost")
        self.client = redisclient.connect(metadata)
        # redis-py's pool fails ("Too many connections") instead of waiting when it is full;
        # publishes and acks queue here, leaving room for each subscription's blocking read.
        pool_size = int(getattr(self.client.connection_pool, "max_connections", 100) or 100)
        self.commands = asyncio.Semaphore(max(4, pool_size - 16))
        self.processing_timeout = metadata.get_duration("processingTimeout", 60.0)
        self.redeliver_interval = metadata.get_duration("redeliverInterval", 15.0)
        self.max_len = metadata.get_int("maxLenApprox", 0)
        try:
            await self.client.ping()
        except redisclient.UNAVAILABLE as exc:
            await self.client.aclose()
            raise redisclient.unavailable(self.address, exc) from exc

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except redisclient.UNAVAILABLE as exc:
            raise redisclient.unavailable(self.address, exc) from exc

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        try:
            async with self.commands:
                await self.client.xadd(
                    topic, {"data": data}, maxlen=self.max_len or None, approximate=bool(self.max_len)
                )
        except redisclient.UNAVAILABLE as exc:
            raise redisclient.unavailable(self.address, exc) from exc

    async def subscribe(self, topic: str, handler: Handler, metadata: Mapping[str, str]) -> _StreamSubscription:
        options = subscribe_options(metadata, self.metadata, self.context.app_id)
        try:
            await self.client.xgroup_create(topic, options.consumer_id, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except redisclient.UNAVAILABLE as exc:
            raise redisclient.unavailable(self.address, exc) from exc
        subscription = _StreamSubscription(self, topic, options.consumer_id, handler, options.max_concurrency)
        self.subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in list(self.subscriptions):
            await subscription.close()
        await self.client.aclose()
