"""Lock on one Redis server (upstream type `redis`): SET NX EX, owner-checked Lua unlock/keep-alive.

Safe as long as that one server keeps its data: a failover to a replica that had not yet
received the SET can grant the lock twice (see docs/lock.md, docs/scaling.md). The same holds
on a Redis Cluster (each lock key lives on the master of its slot) and behind Sentinel.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import _redis_scripts as scripts
from layotto.components.lock import base as lock
from layotto.errors import ComponentError


class RedisLock(lock.LockStore):
    metadata_keys = (*redis_driver.METADATA_KEYS,)
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _client: redis_driver.Client
    _address: str

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        settings = redis_driver.RedisSettings.from_metadata(metadata)
        self._address = settings.address
        self._client = redis_driver.connect(settings, autopipeline=True)
        self._unlock = self._client.register_script(scripts.UNLOCK)
        self._keep_alive = self._client.register_script(scripts.KEEP_ALIVE)
        await self.ping()

    def _error(self, exc: RedisError | OSError) -> ComponentError:
        if isinstance(exc, redis_driver.UNAVAILABLE):
            return redis_driver.unavailable(self._address, exc)
        return ComponentError(f"redis lock error: {exc}")

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> int:
        try:
            return int(await script(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc

    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        try:
            return bool(await self._client.set(request.key, request.owner, ex=request.expire, nx=True))
        except (RedisError, OSError) as exc:
            raise self._error(exc) from exc

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        return scripts.status_of(await self._run(self._unlock, [request.key], [request.owner]))

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        return scripts.status_of(await self._run(self._keep_alive, [request.key], [request.owner, request.expire]))

    async def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            await client.aclose()
