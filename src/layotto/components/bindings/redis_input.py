"""Input for Dapr's `bindings.redis` (upstream's is output only): a list or a stream.

The output operations are `redis.py`'s; this adds `read`, configured by one of (a Layotto
extension, so these names are ours):

- `listKey`: a list used as a queue. Producers LPUSH; the binding takes entries from the other
  end with BLMOVE into its processing list `<listKey>:processing:<consumerID>`, so an entry is
  never only in the sidecar's memory. Taken: removed from the processing list (LREM). Failed:
  moved back to the end it is taken from (MULTI: LREM + RPUSH), so it is the next delivered.
  When reading begins, whatever the processing list holds (a sidecar stopped mid-event) goes
  back to the queue first. Sidecars sharing a `consumerID` share the processing list: give
  each its own to keep their in-flight entries apart. Event metadata: `key`.
- `streamKey`: a stream read by the consumer group `consumerID` (created at the stream's start
  with MKSTREAM), each reading one consumer of it. Taken: XACK. Failed: the entry stays
  pending and is claimed again (XAUTOCLAIM) once idle for `processingTimeout` (15 s), looked
  for every `redeliverInterval` (60 s), as Dapr's Redis pub/sub does. The event data is the
  entry's `data` field; its other fields, and `id` (the entry id), are the metadata.

`consumerID` defaults to the app id. One of the two keys, not both; with neither the binding
is output only (no `BindingFeature.INPUT`). On a Redis Cluster, the list and its processing
list must share a slot: give `listKey` a {hash tag}. Events are delivered one at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings import base as binding
from layotto.components.bindings.redis import RedisBinding
from layotto.errors import ConfigError, InvalidArgumentError

log = logging.getLogger("layotto.bindings.redis")

#: How long one blocking read waits before it is sent again (and a close is noticed).
BLOCK_SECONDS = 1.0


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class RedisInputBinding(RedisBinding):
    metadata_keys = (
        *redis_driver.METADATA_KEYS,
        "listKey",
        "streamKey",
        "consumerID",
        "redeliverInterval",
        "processingTimeout",
    )
    features = frozenset({binding.BindingFeature.INPUT})
    _reader: Any = None

    def __init__(self) -> None:
        self._readings: set[binding.TaskReading] = set()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.list_key = metadata.get_str("listKey")
        self.stream_key = metadata.get_str("streamKey")
        if self.list_key and self.stream_key:
            await self.close()
            raise ConfigError("set 'listKey' or 'streamKey', not both", f"{metadata.where}.metadata.listKey")
        if not (self.list_key or self.stream_key):
            self.features = frozenset()
            return
        self.consumer_id = metadata.get_str("consumerID") or context.app_id or "layotto"
        self.processing = f"{self.list_key}:processing:{self.consumer_id}"
        self.redelivery = redis_driver.StreamRedelivery.from_metadata(metadata)
        settings = redis_driver.RedisSettings.from_metadata(metadata)
        # Blocking reads on a client of their own, whose read timeout leaves room for the block.
        self._reader = redis_driver.connect(
            dataclasses.replace(settings, read_timeout=settings.read_timeout + BLOCK_SECONDS)
        )
        if self.list_key:
            try:
                redis_driver.check_one_slot(self._reader, [self.list_key, self.processing], "the list input")
            except InvalidArgumentError as exc:
                await self.close()
                raise ConfigError(str(exc), f"{metadata.where}.metadata.listKey") from None

    async def read(self, handler: binding.Handler) -> binding.Reading:
        if binding.BindingFeature.INPUT not in self.features:
            return await super().read(handler)
        where = f"redis binding {self.context.name}"
        if self.list_key:
            await self._guarded(self._requeue_processing)
            return binding.TaskReading(self._loop(lambda: self._list_step(handler, where)), where, self._readings)
        consumer = f"{self.consumer_id}-{uuid.uuid4().hex[:12]}"
        await self._guarded(self._ensure_group)
        state = {"reclaim_at": time.monotonic() + self.redelivery.interval}

        async def step() -> None:
            await self._stream_step(handler, where, consumer, state)

        async def leave() -> None:
            # A consumer with pending entries stays, so that they are claimed again.
            pending = await self._reader.xpending_range(
                self.stream_key, self.consumer_id, min="-", max="+", count=1, consumername=consumer
            )
            if not pending:
                await self._reader.xgroup_delconsumer(self.stream_key, self.consumer_id, consumer)

        return binding.TaskReading(self._loop(step), where, self._readings, leave)

    async def _guarded(self, call: Callable[[], Awaitable[None]]) -> None:
        try:
            await call()
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc

    async def _loop(self, step: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            redis_driver.stop_if_cancelled()
            try:
                await step()
                failures = 0
            except (ResponseError, *redis_driver.UNAVAILABLE) as exc:
                log.warning("redis binding %s: reading failed (%s); retrying", self.context.name, exc)
                await binding.pause(failures)
                failures += 1

    # ---- list ----
    async def _requeue_processing(self) -> None:
        # Newest first, each to the end entries are taken from: the oldest is taken first.
        while await self._reader.lmove(self.processing, self.list_key, "LEFT", "RIGHT") is not None:
            pass

    async def _list_step(self, handler: binding.Handler, where: str) -> None:
        value = await self._reader.blmove(self.list_key, self.processing, BLOCK_SECONDS, "RIGHT", "LEFT")
        if value is None:
            return
        data = bytes(value) if isinstance(value, bytes) else str(value).encode()
        ok = await binding.handled(handler, binding.BindingEvent(data, {"key": self.list_key}), where)
        async with self._reader.pipeline(transaction=True) as pipe:
            pipe.lrem(self.processing, 1, value)
            if not ok:
                pipe.rpush(self.list_key, value)
            await pipe.execute()

    # ---- stream ----
    async def _ensure_group(self) -> None:
        try:
            await self._reader.xgroup_create(self.stream_key, self.consumer_id, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _stream_step(self, handler: binding.Handler, where: str, consumer: str, state: dict[str, float]) -> None:
        try:
            entries = await self._stream_entries(consumer, state)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group()  # the stream or its group was deleted meanwhile
            return
        for entry_id, fields in entries:
            metadata = {_text(k): _text(v) for k, v in (fields or {}).items() if k != b"data"}
            metadata["id"] = _text(entry_id)
            data = (fields or {}).get(b"data", b"")
            if await binding.handled(handler, binding.BindingEvent(bytes(data), metadata), where):
                await self._reader.xack(self.stream_key, self.consumer_id, entry_id)

    async def _stream_entries(self, consumer: str, state: dict[str, float]) -> list[Any]:
        """Entries idle too long (when a reclaim is due), else new ones (blocking a while)."""
        entries: list[Any] = []
        redelivery = self.redelivery
        if redelivery.enabled and time.monotonic() >= state["reclaim_at"]:
            state["reclaim_at"] = time.monotonic() + redelivery.interval
            reply: Any = await self._reader.xautoclaim(
                self.stream_key, self.consumer_id, consumer, redelivery.idle_ms, start_id="0-0", count=16
            )
            entries = [entry for entry in reply[1] if entry[1] is not None]
        if not entries:
            block = BLOCK_SECONDS
            if redelivery.enabled:
                block = max(0.001, min(block, state["reclaim_at"] - time.monotonic()))
            reply = await self._reader.xreadgroup(
                self.consumer_id, consumer, {self.stream_key: ">"}, count=1, block=int(block * 1000)
            )
            streams = reply.items() if isinstance(reply, dict) else reply or ()  # RESP3 or RESP2
            entries = [entry for _, stream_entries in streams for entry in stream_entries]
        return entries

    async def close(self) -> None:
        await binding.close_readings(self._readings)
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.aclose()
        await super().close()
