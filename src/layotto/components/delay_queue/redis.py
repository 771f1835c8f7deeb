"""Delays for the redis pub/sub, kept in Redis so every sidecar on that Redis shares them.

Keys (in the pub/sub component's Redis and DB; prefix from metadata `delayQueueKey`,
default "layotto-delay-queue"):
  <prefix>        sorted set: message id, scored by the due time (Redis server clock, ms)
  <prefix>:msg    hash: message id -> JSON {topic, data (base64), metadata}

On a Redis Cluster both keys carry the prefix as a hash tag (`{<prefix>}`, `{<prefix>}:msg`)
so the scripts, which touch both, run on the one node of their slot.

Any sidecar's scheduler claims due messages with one script that pushes their score a lease
ahead (`delayLease`, 30s) before publishing, and deletes them once published. A sidecar that
dies between the two leaves the message to be published again when the lease ends: delivery
is at least once, as for the pub/sub itself. Times are Redis's, so sidecar clocks do not matter.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
from typing import Any

from redis.exceptions import RedisError

from layotto.components._drivers import redis as redis_driver
from layotto.components.delay_queue.base import RETRY_DELAY, DelayedMessage, DelayScheduler

log = logging.getLogger("layotto.delay_queue.redis")

_SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
"""

# Returns {wait_ms, id1, body1, id2, body2, ...}: the due messages, claimed for `lease` ms, and
# how long until the next one is due (-1 when none is scheduled).
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {-1}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
    table.insert(out, id)
    table.insert(out, body)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[1] = math.max(0, tonumber(first[2]) - now) end
return out
"""

_DONE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

_RETRY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
return 1
"""

BATCH = 100


class RedisScheduler(DelayScheduler):
    async def start(self) -> None:
        settings = redis_driver.RedisSettings.from_metadata(self.metadata)
        prefix = redis_driver.hash_tagged(settings, self.metadata.get_str("delayQueueKey") or "layotto-delay-queue")
        self._keys = [prefix, f"{prefix}:msg"]
        self._lease_ms = int(self.metadata.get_duration("delayLease", 30.0) * 1000)
        self._poll = self.metadata.get_duration("delayPollInterval", 1.0)
        self._address = settings.address
        self._client = redis_driver.connect(settings)
        self._schedule = self._client.register_script(_SCHEDULE)
        self._claim = self._client.register_script(_CLAIM)
        self._done = self._client.register_script(_DONE)
        self._retry = self._client.register_script(_RETRY)
        self._wake = asyncio.Event()
        self._start_loop()

    async def stop(self) -> None:
        await self._stop_loop()
        await self._client.aclose()

    async def schedule(self, message: DelayedMessage, delay: float) -> None:
        doc = {
            "id": message.id,
            "topic": message.topic,
            "data": base64.b64encode(message.data).decode(),
            "metadata": message.metadata,
        }
        # Members are fresh ids: an app may publish several events with one CloudEvent id.
        member = uuid.uuid4().hex
        try:
            await self._schedule(keys=self._keys, args=[member, max(0, int(delay * 1000)), json.dumps(doc)])
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from None
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            redis_driver.stop_if_cancelled()
            self._wake.clear()
            try:
                reply: list[Any] = await self._claim(keys=self._keys, args=[self._lease_ms, BATCH])
            except (RedisError, *redis_driver.UNAVAILABLE) as exc:
                log.warning("delay queue of %s cannot reach redis at %s: %s", self.name, self._address, exc)
                await asyncio.sleep(RETRY_DELAY)  # backing off from a backend that is down
                continue
            wait_ms = int(reply[0])
            claimed = [(_text(reply[i]), _text(reply[i + 1])) for i in range(1, len(reply), 2)]
            if claimed:
                await asyncio.gather(*(self._deliver(mid, body) for mid, body in claimed))
                if len(claimed) == BATCH:
                    continue
            timeout = self._poll if wait_ms < 0 else min(self._poll, wait_ms / 1000)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver(self, member: str, body: str) -> None:
        try:
            doc = json.loads(body)
            message = DelayedMessage(
                id=str(doc.get("id", member)),
                topic=str(doc["topic"]),
                data=base64.b64decode(doc["data"]),
                metadata={str(k): str(v) for k, v in dict(doc.get("metadata") or {}).items()},
            )
        except (ValueError, KeyError, TypeError):
            log.error("dropping malformed delayed message %s in %s", member, self._keys[1])
            await self._finish(self._done, member)
            return
        if await self.publish(message):
            await self._finish(self._done, member)
        else:
            await self._finish(self._retry, member, int(RETRY_DELAY * 1000))

    async def _finish(self, script: Any, member: str, *args: int) -> None:
        try:
            await script(keys=self._keys, args=[member, *args])
        except (RedisError, *redis_driver.UNAVAILABLE) as exc:
            # The lease runs out and the message is published again: at least once.
            log.warning("delayed message %s not cleared from redis (it will be published again): %s", member, exc)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
