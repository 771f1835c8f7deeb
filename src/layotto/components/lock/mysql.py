"""Lock in a MySQL/MariaDB table (type `mysql`): one row per held lock, expiry by the server clock.

Each operation is one statement (an upsert whose assignments only apply when the stored
lock has expired), so InnoDB's row locks make it atomic across sidecars.
"""

from __future__ import annotations

import re
from typing import Any

import aiomysql
import pymysql

from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import _sql
from layotto.components.lock.base import (
    KeepAliveRequest,
    LockStatus,
    LockStore,
    TryLockRequest,
    UnlockRequest,
)
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError

# user[:password]@tcp(host[:port])/dbname[?params], as Go's mysql driver writes it.
_GO_DSN = re.compile(r"^(?:(?P<user>[^:@]*)(?::(?P<password>[^@]*))?@)?(?:tcp\((?P<addr>[^)]*)\))?/(?P<db>[^?]*)")
# Client-side "server has gone away" codes (2002-2013) and server shutdown codes.
_UNAVAILABLE_CODES = {2002, 2003, 2006, 2013, 1053, 1927}


def parse_go_dsn(dsn: str, where: str) -> dict[str, Any]:
    match = _GO_DSN.match(dsn.strip())
    if not match:
        raise ConfigError(f"connectionString {dsn!r} is not user:password@tcp(host:port)/db", where)
    host, _, port = (match["addr"] or "127.0.0.1:3306").rpartition(":")
    if not host:
        host, port = port, "3306"
    return {
        "user": match["user"] or "root",
        "password": match["password"] or "",
        "host": host,
        "port": int(port),
        "db": match["db"] or None,
    }


def _failure(exc: Exception) -> ComponentError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    if isinstance(exc, (OSError, TimeoutError)) or code in _UNAVAILABLE_CODES:
        return BackendUnavailableError(f"mysql is unavailable: {exc}")
    return ComponentError(f"mysql lock error: {exc}")


class MysqlLock(LockStore):
    _pool: aiomysql.Pool | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata.connectionString"
        self._params = parse_go_dsn(metadata.required("connectionString"), where)
        self._timeout = metadata.get_duration("timeout", 5.0)
        t = _sql.table_name(metadata.get_str("tableName"), metadata.where)
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
                async with pool.acquire() as conn, conn.cursor() as cur:
                    # Checked first: CREATE TABLE IF NOT EXISTS warns (a Python warning) when it exists.
                    if not await cur.execute(self._sql_exists, (self._table,)):
                        await cur.execute(self._sql_create)
            except (pymysql.MySQLError, OSError, TimeoutError) as exc:
                raise _failure(exc) from exc
            self._pool = pool
        return self._pool

    async def _execute(self, sql: str, args: tuple[Any, ...]) -> tuple[int, Any]:
        """(affected rows, first row) of one autocommitted statement."""
        pool = await self._connect()
        try:
            async with pool.acquire() as conn, conn.cursor() as cur:
                rows = await cur.execute(sql, args)
                return int(rows), await cur.fetchone()
        except (pymysql.MySQLError, OSError, TimeoutError) as exc:
            raise _failure(exc) from exc

    async def _owner(self, key: str) -> str | None:
        _, row = await self._execute(self._sql_owner, (key,))
        return None if row is None else str(row[0])

    async def ping(self) -> None:
        await self._execute("SELECT 1", ())

    async def try_lock(self, request: TryLockRequest) -> bool:
        # 1: inserted, 2: an expired row was taken over, 0: held (the row was left as it was).
        changed, _ = await self._execute(self._sql_lock, (request.key, request.owner, request.expire))
        return changed > 0

    async def unlock(self, request: UnlockRequest) -> LockStatus:
        changed, _ = await self._execute(self._sql_unlock, (request.key, request.owner))
        if changed > 0:
            return LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def keep_alive(self, request: KeepAliveRequest) -> LockStatus:
        changed, _ = await self._execute(self._sql_extend, (request.expire, request.key, request.owner))
        if changed > 0:
            return LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None
