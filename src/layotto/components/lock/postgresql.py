"""Lock in a PostgreSQL table (type `postgresql`): one row per held lock, expiry by the server clock.

Every operation is a single statement, so PostgreSQL's row locking makes it atomic; the
server's clock_timestamp() decides expiry, so sidecar clocks do not matter. Each call is
bounded by `timeout` (5 s): a hung server fails it with UNAVAILABLE, and a TryLock it did not
answer is not retried (it may hold the lock; it expires by itself).
"""

from __future__ import annotations

import asyncpg

from layotto.components._drivers import postgres, sql
from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import _sql
from layotto.components.lock import base as lock
from layotto.errors import BackendUnavailableError, ComponentError


class PostgresqlLock(lock.LockStore):
    metadata_keys = ("connectionString", "tableName", "timeout")
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _pool: asyncpg.Pool | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata.connectionString"
        self._connect_args = postgres.connect_args(metadata.required("connectionString"), where)
        self._timeout = sql.call_timeout(metadata, "timeout")
        self._connect_args.setdefault("timeout", self._timeout)
        self._describe = f"postgresql at {postgres.address(self._connect_args)}"
        t = sql.table_name(metadata, _sql.DEFAULT_TABLE)
        # Taking a free lock never touches a held row (DO NOTHING does not lock it), so
        # contenders do not queue behind the holder; an expired row is taken over by an
        # UPDATE whose WHERE PostgreSQL re-checks on the latest row version.
        self._sql_insert = (
            f"INSERT INTO {t} (resource, owner, expires_at)"
            " VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) ON CONFLICT (resource) DO NOTHING"
        )
        self._sql_take_over = (
            f"UPDATE {t} SET owner = $2, expires_at = clock_timestamp() + make_interval(secs => $3)"
            " WHERE resource = $1 AND expires_at <= clock_timestamp()"
        )
        self._sql_unlock = f"DELETE FROM {t} WHERE resource = $1 AND owner = $2 AND expires_at > clock_timestamp()"
        self._sql_extend = (
            f"UPDATE {t} SET expires_at = clock_timestamp() + make_interval(secs => $3)"
            " WHERE resource = $1 AND owner = $2 AND expires_at > clock_timestamp()"
        )
        self._sql_owner = f"SELECT owner FROM {t} WHERE resource = $1 AND expires_at > clock_timestamp()"
        self._sql_create = (
            f"CREATE TABLE IF NOT EXISTS {t} ("
            " resource TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)"
        )
        await self._connect()

    async def _connect(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                pool = await asyncpg.create_pool(min_size=1, max_size=10, **self._connect_args)
            except postgres.UNAVAILABLE as exc:
                raise BackendUnavailableError(f"{self._describe} is unavailable: {exc}") from exc
            except asyncpg.PostgresError as exc:
                raise ComponentError(f"postgresql lock error: {exc}") from exc
            try:
                async with postgres.guarded(pool, self._timeout, self._describe) as conn:
                    await conn.execute(self._sql_create)
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                pass  # another sidecar created it at the same moment
            except BaseException as exc:
                pool.terminate()  # not close(): that waits for a server that may not answer
                if isinstance(exc, asyncpg.PostgresError):
                    raise ComponentError(f"postgresql lock error: {exc}") from exc
                raise
            self._pool = pool
        return self._pool

    async def _execute(self, statement: str, *args: object) -> str:
        pool = await self._connect()
        try:
            async with postgres.guarded(pool, self._timeout, self._describe) as conn:
                return str(await conn.execute(statement, *args))
        except asyncpg.PostgresError as exc:
            raise ComponentError(f"postgresql lock error: {exc}") from exc

    async def _owner(self, key: str) -> str | None:
        pool = await self._connect()
        try:
            async with postgres.guarded(pool, self._timeout, self._describe) as conn:
                value = await conn.fetchval(self._sql_owner, key)
        except asyncpg.PostgresError as exc:
            raise ComponentError(f"postgresql lock error: {exc}") from exc
        return None if value is None else str(value)

    async def ping(self) -> None:
        await self._execute("SELECT 1")

    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        args = (request.key, request.owner, float(request.expire))
        if postgres.rows(await self._execute(self._sql_insert, *args)) > 0:
            return True
        return postgres.rows(await self._execute(self._sql_take_over, *args)) > 0

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        if postgres.rows(await self._execute(self._sql_unlock, request.key, request.owner)) > 0:
            return lock.LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        changed = await self._execute(self._sql_extend, request.key, request.owner, float(request.expire))
        if postgres.rows(changed) > 0:
            return lock.LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
