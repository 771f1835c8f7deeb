"""MySQL / MariaDB state store (aiomysql pool), configured as Dapr's: `connectionString` (a Go
DSN such as `root:@tcp(127.0.0.1:3306)/test`), `schemaName` (default dapr_state_store, created
when missing, as upstream) and `tableName` (default state, created when missing).

One row per key with a `version` counter as the etag and an `expiredate` for TTLs (server
time, so every sidecar agrees). Transactions and bulk writes run in one database transaction.

Each call is bounded by `timeoutInSeconds` (Dapr's key), 5 s by default: aiomysql has no read
timeout, so without it a server that stops answering would hang the call for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiomysql
import pymysql

from layotto.components._drivers import mysql
from layotto.components.base import ComponentContext, Metadata, parse_duration
from layotto.components.state import base as state
from layotto.components.state.relational import PooledSqlStateStore
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError, ETagMismatchError

log = logging.getLogger("layotto.state.mysql")

T = TypeVar("T")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
#: Lock wait timeout and deadlock: the transaction was rolled back and may simply be retried.
_RETRYABLE = {1205, 1213}
_DUPLICATE_KEY = 1062
# Values travel hex-encoded into UNHEX(): aiomysql 0.3 cannot escape bytes parameters with
# PyMySQL >= 1.1 (it imports a helper PyMySQL replaced by a placeholder string).
_MAX_KEYS_PER_STATEMENT = 1000
#: The last second a TIMESTAMP column holds (MySQL; MariaDB before 11.5). An expiry past it is
#: refused by a strict server (an INTERNAL answer) and stored as zero, already expired, by a lax
#: one (the value lost).
_TIMESTAMP_END = datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC).timestamp()
#: The server's clock may run ahead of this host's.
_CLOCK_MARGIN = 86400


class MysqlStateStore(PooledSqlStateStore[aiomysql.Pool, aiomysql.Cursor]):
    metadata_keys = (
        "connectionString",
        "schemaName",
        "tableName",
        "ttlInSeconds",
        "timeoutInSeconds",
        "timeout",
        "minConns",
        "maxConns",
        "connMaxLifetime",
        "cleanupIntervalInSeconds",
        "pemPath",
    )
    _table = "`dapr_state_store`.`state`"
    _engine = _describe = "mysql"

    def max_ttl_seconds(self) -> int:
        left = int(_TIMESTAMP_END - time.time()) - _CLOCK_MARGIN
        return max(0, min(state.MAX_TTL_SECONDS, left))

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata"
        dsn = mysql.parse_go_dsn(*self._connection_string(metadata))
        schema = metadata.get_str("schemaName", "dapr_state_store")
        table = metadata.get_str("tableName", "state")
        for key, name in (("schemaName", schema), ("tableName", table)):
            if not _IDENT.match(name):
                raise ConfigError(f"invalid name {name!r}", f"{where}.{key}")
        self._table = f"`{schema}`.`{table}`"
        self._read_server_options(metadata, f"mysql at {dsn.unix_socket or f'{dsn.host}:{dsn.port}'}")
        timeout = parse_duration(dsn.params["timeout"]) if dsn.params.get("timeout") else 10.0
        options: dict[str, Any] = {
            **dsn.connect_args(pem_path=metadata.get_str("pemPath"), where=f"{where}.pemPath"),
            "connect_timeout": timeout,
            "autocommit": True,
            "charset": "utf8mb4",
            "minsize": metadata.get_int("minConns", 1),
            "maxsize": metadata.get_int("maxConns", 16),
            "pool_recycle": metadata.get_duration("connMaxLifetime", 3600.0),
        }
        self._build_statements()
        try:
            self._pool = await aiomysql.create_pool(**options)
        except (pymysql.err.MySQLError, OSError, TimeoutError) as exc:
            raise BackendUnavailableError(f"{self._describe} is unavailable: {mysql.reason(exc)}") from exc
        try:
            await self._call(lambda cur: self._ensure_table(cur, schema, table))
        except BaseException:
            await self.close()
            raise
        self._start_purger(metadata, f"mysql-purge-{context.name}", (ComponentError,), log)

    async def _ensure_table(self, cur: aiomysql.Cursor, schema: str, table: str) -> None:
        # Look before creating: "IF NOT EXISTS" on an existing object raises a Warning.
        await cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (schema,))
        if await cur.fetchone() is None:
            await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
        await cur.execute(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema, table)
        )
        if await cur.fetchone() is None:
            await cur.execute(self._ddl())

    def _ddl(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            " id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,"
            " value LONGBLOB NOT NULL,"
            " version BIGINT NOT NULL,"
            " insertDate TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
            " updateDate TIMESTAMP(6) NULL,"
            " expiredate TIMESTAMP(6) NULL)"
        )

    def _build_statements(self) -> None:
        t = self._table
        self._live = "(expiredate IS NULL OR expiredate > NOW(6))"
        self._expires = "NOW(6) + INTERVAL %s SECOND"
        self._sql_get = f"SELECT value, version FROM {t} WHERE id = %s AND {self._live}"
        self._sql_update = (
            f"UPDATE {t} SET value = UNHEX(%s), version = version + 1, updateDate = NOW(6),"
            f" expiredate = {self._expires} WHERE id = %s AND version = %s AND {self._live}"
        )
        self._sql_purge_one = f"DELETE FROM {t} WHERE id = %s AND expiredate <= NOW(6)"
        self._sql_insert = (
            f"INSERT INTO {t} (id, value, version, expiredate) VALUES (%s, UNHEX(%s), 1, {self._expires})"
        )
        # Assignments run left to right: `version` must read the old expiredate.
        self._upsert_tail = (
            " ON DUPLICATE KEY UPDATE value = VALUES(value),"
            " version = IF(expiredate IS NOT NULL AND expiredate <= NOW(6), 1, version + 1),"
            " updateDate = NOW(6), expiredate = VALUES(expiredate)"
        )
        self._sql_delete_if = f"DELETE FROM {t} WHERE id = %s AND version = %s AND {self._live}"
        self._sql_delete = f"DELETE FROM {t} WHERE id = %s"
        self._sql_purge = f"DELETE FROM {t} WHERE expiredate IS NOT NULL AND expiredate <= NOW(6)"

    _driver_errors = (pymysql.err.MySQLError,)

    def _retryable(self, exc: Exception) -> bool:
        # A deadlock or lock timeout rolled the transaction back; MySQL advises a retry.
        return mysql.error_code(exc) in _RETRYABLE

    async def _attempt(self, fn: Callable[[aiomysql.Cursor], Awaitable[T]], transaction: bool) -> T:
        async with mysql.guarded(self.pool, self._timeout, self._describe) as conn:
            if not transaction:
                async with conn.cursor() as cur:
                    return await fn(cur)
            await conn.begin()
            try:
                async with conn.cursor() as cur:
                    result = await fn(cur)
                await conn.commit()
                return result
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.rollback()
                raise

    # ---- reads ----
    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        async def fetch(cur: aiomysql.Cursor) -> Any:
            await cur.execute(self._sql_get, (request.key,))
            return await cur.fetchone()

        row = await self._call(fetch, retry=True)
        return None if row is None else state.GetResponse(bytes(row[0]), str(row[1]))

    async def bulk_get(self, requests: Sequence[state.GetRequest], parallelism: int = 0) -> list[state.BulkGetItem]:
        keys = list(dict.fromkeys(r.key for r in requests))

        async def fetch(cur: aiomysql.Cursor) -> list[Any]:
            rows: list[Any] = []
            for start in range(0, len(keys), _MAX_KEYS_PER_STATEMENT):
                chunk = keys[start : start + _MAX_KEYS_PER_STATEMENT]
                marks = ", ".join(["%s"] * len(chunk))
                await cur.execute(
                    f"SELECT id, value, version FROM {self._table} WHERE id IN ({marks}) AND {self._live}", chunk
                )
                rows.extend(await cur.fetchall())
            return rows

        found = {row[0]: state.GetResponse(bytes(row[1]), str(row[2])) for row in await self._call(fetch, retry=True)}
        return [state.BulkGetItem(r.key, found.get(r.key)) for r in requests]

    # ---- writes ----
    async def _apply(self, cur: aiomysql.Cursor, op: state.Operation) -> None:
        if isinstance(op, state.SetRequest):
            ttl = self._ttl(op)
            if op.etag:
                await cur.execute(self._sql_update, (op.value.hex(), ttl, op.key, state.parse_version(op.etag)))
                if cur.rowcount == 0:
                    raise ETagMismatchError(f"possible etag mismatch: key {op.key} was not saved")
            elif op.concurrency == state.FIRST_WRITE:
                await cur.execute(self._sql_purge_one, (op.key,))
                try:
                    await cur.execute(self._sql_insert, (op.key, op.value.hex(), ttl))
                except pymysql.err.IntegrityError as exc:
                    if mysql.error_code(exc) != _DUPLICATE_KEY:
                        raise
                    raise ETagMismatchError(f"possible etag mismatch: key {op.key} exists") from None
            else:
                await cur.execute(self._sql_insert + self._upsert_tail, (op.key, op.value.hex(), ttl))
        elif op.etag:
            await cur.execute(self._sql_delete_if, (op.key, state.parse_version(op.etag)))
            if cur.rowcount == 0:
                raise ETagMismatchError(f"possible etag mismatch: key {op.key} was not deleted")
        else:
            await cur.execute(self._sql_delete, (op.key,))

    async def _upsert_all(self, requests: Sequence[state.SetRequest]) -> None:
        # One multi-row upsert per chunk, in one transaction.
        latest = {r.key: r for r in requests}  # a repeated key: its last value wins, as in a loop

        async def upsert(cur: aiomysql.Cursor) -> None:
            items = list(latest.values())
            for start in range(0, len(items), _MAX_KEYS_PER_STATEMENT):
                chunk = items[start : start + _MAX_KEYS_PER_STATEMENT]
                rows = ", ".join([f"(%s, UNHEX(%s), 1, {self._expires})"] * len(chunk))
                params = [p for r in chunk for p in (r.key, r.value.hex(), self._ttl(r))]
                await cur.execute(
                    f"INSERT INTO {self._table} (id, value, version, expiredate) VALUES {rows}{self._upsert_tail}",
                    params,
                )

        await self._call(upsert, transaction=True)

    async def _delete_all(self, requests: Sequence[state.DeleteRequest]) -> None:
        keys = list(dict.fromkeys(r.key for r in requests))

        async def delete_all(cur: aiomysql.Cursor) -> None:
            for start in range(0, len(keys), _MAX_KEYS_PER_STATEMENT):
                chunk = keys[start : start + _MAX_KEYS_PER_STATEMENT]
                marks = ", ".join(["%s"] * len(chunk))
                await cur.execute(f"DELETE FROM {self._table} WHERE id IN ({marks})", chunk)

        await self._call(delete_all, transaction=True)

    async def ping(self) -> None:
        await self._call(lambda cur: cur.execute("SELECT 1"), retry=True)

    async def close(self) -> None:
        await self._stop_purger()
        if self._pool is not None:
            self._pool.close()
            try:
                await asyncio.wait_for(self._pool.wait_closed(), timeout=5.0)
            except Exception as exc:  # closing must not raise
                log.warning("closing mysql pool failed: %s", exc)
                self._pool.terminate()
            self._pool = None
