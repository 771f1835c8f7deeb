"""Lock in a MySQL/MariaDB table (type `mysql`): one row per held lock, expiry by the server clock.

Each operation is one statement (an upsert whose assignments only apply when the stored
lock has expired), so InnoDB's row locks make it atomic across sidecars. Each call is bounded
by `timeout` (5 s): aiomysql has no read timeout, so without it a hung server hangs the call.
"""

from __future__ import annotations

from typing import Any

import aiomysql
import pymysql

from layotto.components._drivers import mysql, sql
from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import _sql
from layotto.components.lock import base as lock
from layotto.errors import BackendUnavailableError, ComponentError


class MysqlLock(lock.LockStore):
    metadata_keys = ("connectionString", "tableName", "timeout", "pemPath")
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _pool: aiomysql.Pool | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata.connectionString"
        dsn = mysql.parse_go_dsn(metadata.required("connectionString"), where)
        self._params = dsn.connect_args(
            pem_path=metadata.get_str("pemPath"), where=f"{metadata.where}.metadata.pemPath"
        )
        self._describe = f"mysql at {dsn.unix_socket or f'{dsn.host}:{dsn.port}'}"
        self._timeout = sql.call_timeout(metadata, "timeout")
        t = sql.table_name(metadata, _sql.DEFAULT_TABLE)
        # MySQL applies SET assignments left to right: `owner` must be decided before
        # `expires_at` changes, so both test the stored (old) expiry.
        self._sql_lock = (
            f"INSERT INTO {t} (resource, owner, expires_at)"
            " VALUES (%s, %s, NOW(6) + INTERVAL %s SECOND)"
            " ON DUPLICATE KEY UPDATE"
            " owner = IF(expires_at <= NOW(6), VALUES(owner), owner),"
            " expires_at = IF(expires_at <= NOW(6), VALUES(expires_at), expires_at)"
        )
        self._sql_unlock = f"DELETE FROM {t} WHERE resource = %s AND owner = %s AND expires_at > NOW(6)"
        self._sql_extend = (
            f"UPDATE {t} SET expires_at = NOW(6) + INTERVAL %s SECOND"
            " WHERE resource = %s AND owner = %s AND expires_at > NOW(6)"
        )
        self._sql_owner = f"SELECT owner FROM {t} WHERE resource = %s AND expires_at > NOW(6)"
        self._table = t
        self._sql_exists = "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s"
        self._sql_create = (
            f"CREATE TABLE IF NOT EXISTS {t} (resource VARCHAR(512) NOT NULL PRIMARY KEY,"
            " owner VARCHAR(512) NOT NULL, expires_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
        )
        await self._connect()

    async def _connect(self) -> aiomysql.Pool:
        if self._pool is None:
            try:
                pool = await aiomysql.create_pool(
                    minsize=1,
                    maxsize=10,
                    autocommit=True,
                    connect_timeout=self._timeout,
                    pool_recycle=300,
                    **self._params,
                )
            except (pymysql.MySQLError, OSError) as exc:
                raise self._failure(exc) from exc
            try:
                async with mysql.guarded(pool, self._timeout, self._describe) as conn, conn.cursor() as cur:
                    # Checked first: CREATE TABLE IF NOT EXISTS warns (a Python warning) when it exists.
                    if not await cur.execute(self._sql_exists, (self._table,)):
                        await cur.execute(self._sql_create)
            except BaseException as exc:
                pool.terminate()
                if isinstance(exc, pymysql.MySQLError):
                    raise self._failure(exc) from exc
                raise
            self._pool = pool
        return self._pool

    def _failure(self, exc: Exception) -> ComponentError:
        if mysql.outage(exc):
            return BackendUnavailableError(f"{self._describe} is unavailable: {mysql.reason(exc)}")
        return ComponentError(f"mysql lock error: {exc}")

    async def _execute(self, statement: str, args: tuple[Any, ...]) -> tuple[int, Any]:
        """(affected rows, first row) of one autocommitted statement."""
        pool = await self._connect()
        try:
            async with mysql.guarded(pool, self._timeout, self._describe) as conn, conn.cursor() as cur:
                rows = await cur.execute(statement, args)
                return int(rows), await cur.fetchone()
        except pymysql.MySQLError as exc:
            raise self._failure(exc) from exc

    async def _owner(self, key: str) -> str | None:
        _, row = await self._execute(self._sql_owner, (key,))
        return None if row is None else str(row[0])

    async def ping(self) -> None:
        await self._execute("SELECT 1", ())

    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        # 1: inserted, 2: an expired row was taken over, 0: held (the row was left as it was).
        changed, _ = await self._execute(self._sql_lock, (request.key, request.owner, request.expire))
        return changed > 0

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        changed, _ = await self._execute(self._sql_unlock, (request.key, request.owner))
        if changed > 0:
            return lock.LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        changed, _ = await self._execute(self._sql_extend, (request.expire, request.key, request.owner))
        if changed > 0:
            return lock.LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None
