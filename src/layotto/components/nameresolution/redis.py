"""A shared registry in Redis: each sidecar announces app id -> its gRPC address with a TTL
and renews it by heartbeat; lookups read the live entries and are cached briefly.

Layout: one sorted set per app id, `<keyPrefix><app id>`, members = sidecar addresses,
scores = expiry in Redis server milliseconds (so sidecars' clocks need not agree).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.nameresolution.base import NameResolutionFeature, NameResolver
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError
from layotto.tasks import stop_task

log = logging.getLogger("layotto.nameresolution.redis")

_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# KEYS[1] set, ARGV[1] address, ARGV[2] ttl ms. Drops expired members; never shortens the
# set's own expiry that a longer-lived sibling registration set.
_REGISTER = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local keep = tonumber(ARGV[2]) * 2
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return now
"""
)

# KEYS[1] set. The members whose expiry is still ahead.
_RESOLVE = _NOW_MS + "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')"


class RedisResolver(NameResolver):
    """metadata: redisHost (+ the usual redis keys), keyPrefix ("layotto:nameresolution:"),
    ttl (10s), heartbeatInterval (ttl/3), cacheTTL (1s)."""

    metadata_keys = (*redis_driver.METADATA_KEYS, "keyPrefix", "ttl", "heartbeatInterval", "cacheTTL")

    features = frozenset({NameResolutionFeature.REGISTRY})
    _client: redis_driver.Client | None = None
    _heartbeat: asyncio.Task[None] | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._prefix = metadata.get_str("keyPrefix", "layotto:nameresolution:")
        self._ttl = metadata.get_duration("ttl", 10.0)
        if self._ttl < 1.0:
            raise ConfigError("'ttl' must be at least 1s", f"{metadata.where}.metadata.ttl")
        self._interval = metadata.get_duration("heartbeatInterval", self._ttl / 3)
        if not 0 < self._interval < self._ttl:
            raise ConfigError("'heartbeatInterval' must be shorter than 'ttl'", f"{metadata.where}.metadata")
        self._cache_ttl = metadata.get_duration("cacheTTL", 1.0)
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._registered: tuple[str, str] | None = None
        settings = redis_driver.RedisSettings.from_metadata(metadata)
        self._address = settings.address
        self._client = redis_driver.connect(settings)
        self._register_script = self._client.register_script(_REGISTER)
        self._resolve_script = self._client.register_script(_RESOLVE)
        try:
            await self._client.ping()
        except redis_driver.UNAVAILABLE as exc:
            await self.close()
            raise redis_driver.unavailable(self._address, exc) from exc

    def _key(self, app_id: str) -> str:
        return self._prefix + app_id

    async def ping(self) -> None:
        assert self._client is not None
        await redis_driver.ping(self._client, self._address)

    async def resolve(self, app_id: str) -> list[str]:
        cached = self._cache.get(app_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return list(cached[1])
        try:
            members = await self._resolve_script(keys=[self._key(app_id)])
        except redis_driver.UNAVAILABLE as exc:
            if cached is not None:
                # The registry is down: a stale answer beats none while it comes back.
                return list(cached[1])
            raise redis_driver.unavailable(self._address, exc) from exc
        except aioredis.RedisError as exc:
            raise ComponentError(f"name resolution in redis failed: {exc}") from exc
        addresses = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        self._cache[app_id] = (now + self._cache_ttl, addresses)
        return list(addresses)

    def invalidate(self, app_id: str) -> None:
        self._cache.pop(app_id, None)

    async def register(self, app_id: str, address: str) -> None:
        await self._announce(app_id, address)
        self._registered = (app_id, address)
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name=f"nameresolution-heartbeat-{app_id}")

    async def _announce(self, app_id: str, address: str) -> None:
        try:
            await self._register_script(keys=[self._key(app_id)], args=[address, int(self._ttl * 1000)])
        except redis_driver.UNAVAILABLE as exc:
            raise redis_driver.unavailable(self._address, exc) from exc
        except aioredis.RedisError as exc:
            raise ComponentError(f"registering in redis failed: {exc}") from exc

    async def _beat(self) -> None:
        failing = False
        while True:
            redis_driver.stop_if_cancelled()
            await asyncio.sleep(self._interval)
            if self._registered is None:
                continue
            try:
                await self._announce(*self._registered)
            except (BackendUnavailableError, ComponentError) as exc:
                if not failing:
                    log.warning("name resolution heartbeat failed (will keep trying): %s", exc)
                failing = True
            else:
                if failing:
                    log.info("name resolution heartbeat recovered")
                failing = False

    async def deregister(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        await stop_task(heartbeat)
        registered, self._registered = self._registered, None
        if registered is None or self._client is None:
            return
        app_id, address = registered
        try:
            await self._client.zrem(self._key(app_id), address)
        except (aioredis.RedisError, *redis_driver.UNAVAILABLE) as exc:
            # The entry expires by itself after `ttl`.
            log.warning("could not withdraw %s from name resolution: %s", address, exc)

    async def close(self) -> None:
        await self.deregister()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
