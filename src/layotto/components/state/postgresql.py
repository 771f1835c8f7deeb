"""PostgreSQL state store (asyncpg pool), configured as Dapr's: `connectionString`, `tableName`.

One row per key with a `version` counter as the etag and an `expiredate` for TTLs. Time is
the server's (now()), so every sidecar agrees on expiry. Transactions and bulk writes run in
one database transaction: all or nothing.

Each call is bounded by `timeoutInSeconds` (Dapr's key; `timeout` is its alias there too),
5 s by default: a server that stops answering fails the call with UNAVAILABLE, it does not
hang it. Dapr defaults to 20 s; a hung primary is better reported early.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from layotto.components._drivers import postgres
from layotto.components.base import ComponentContext, Metadata
from layotto.components.state import base as state
from layotto.components.state.relational import PooledSqlStateStore
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError, ETagMismatchError

log = logging.getLogger("layotto.state.postgresql")

T = TypeVar("T")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
_TABLE_NAME = re.compile(rf"^{_IDENT}(\.{_IDENT})?$")


def _quote(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


class PostgresqlStateStore(PooledSqlStateStore[asyncpg.Pool, asyncpg.Connection]):
    metadata_keys = (
        "connectionString",
        "tableName",
        "ttlInSeconds",
        "timeoutInSeconds",
        "timeout",
        "connectTimeout",
        "minConns",
        "maxConns",
        "cleanupIntervalInSeconds",
    )
    _table = "state"
    _engine = _describe = "postgresql"

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        args = postgres.connect_args(*self._connection_string(metadata))
        self._table = metadata.get_str("tableName", "state")
        if not _TABLE_NAME.match(self._table):
            raise ConfigError(f"invalid table name {self._table!r}", f"{metadata.where}.metadata.tableName")
        self._read_server_options(metadata, f"postgresql at {postgres.address(args)}")
        args.setdefault("timeout", metadata.get_duration("connectTimeout", 10.0))
        self._build_statements()
        try:
            # No command_timeout: sql.guarded bounds every call, and asyncpg's own timeout
            # cancels through a second connection, which hangs on a hung server.
            self._pool = await asyncpg.create_pool(
                min_size=metadata.get_int("minConns", 1), max_size=metadata.get_int("maxConns", 16), **args
            )
            await self._create_table()
        except BackendUnavailableError:
            await self.close()
            raise
        except postgres.UNAVAILABLE as exc:
            await self.close()
            raise BackendUnavailableError(f"{self._describe} is unavailable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            await self.close()
            raise ComponentError(f"postgresql state store cannot start: {exc}") from exc
        self._start_purger(metadata, f"pg-purge-{context.name}", (ComponentError,), log)

    def _build_statements(self) -> None:
        t = _quote(self._table)
        live = "(expiredate IS NULL OR expiredate > now())"
        expires = "now() + $3::integer * interval '1 second'"
        self._sql_get = f"SELECT value, version FROM {t} WHERE key = $1 AND {live}"
        self._sql_bulk_get = f"SELECT key, value, version FROM {t} WHERE key = ANY($1::text[]) AND {live}"
        self._sql_update = (
            f"UPDATE {t} SET value = $2, version = version + 1, updatedate = now(), expiredate = {expires}"
            f" WHERE key = $1 AND version = $4 AND {live}"
        )
        insert = f"INSERT INTO {t} AS old (key, value, version, expiredate) VALUES ($1, $2, 1, {expires})"
        expired = "(old.expiredate IS NOT NULL AND old.expiredate <= now())"
        self._sql_insert_new = (
            f"{insert} ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = 1,"
            f" updatedate = now(), expiredate = excluded.expiredate WHERE {expired}"
        )
        self._sql_upsert = (
            f"{insert} ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            f" version = CASE WHEN {expired} THEN 1 ELSE old.version + 1 END,"
            " updatedate = now(), expiredate = excluded.expiredate"
        )
        self._sql_delete_if = f"DELETE FROM {t} WHERE key = $1 AND version = $2 AND {live}"
        self._sql_delete = f"DELETE FROM {t} WHERE key = ANY($1::text[])"
        self._sql_purge = f"DELETE FROM {t} WHERE expiredate IS NOT NULL AND expiredate <= now()"

    async def _create_table(self) -> None:
        assert self._pool is not None
        ddl = (
            f"CREATE TABLE IF NOT EXISTS {_quote(self._table)} ("
            " key text NOT NULL PRIMARY KEY,"
            " value bytea NOT NULL,"
            " version bigint NOT NULL,"
            " insertdate timestamp with time zone NOT NULL DEFAULT now(),"
            " updatedate timestamp with time zone NULL,"
            " expiredate timestamp with time zone NULL)"
        )
        try:
            async with postgres.guarded(self._pool, self._timeout, self._describe) as conn:
                await conn.execute(ddl)
        except (asyncpg.exceptions.UniqueViolationError, asyncpg.exceptions.DuplicateTableError):
            pass  # another sidecar created it at the same moment

    _driver_errors = (asyncpg.PostgresError,)

    async def _attempt(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], transaction: bool) -> T:
        async with postgres.guarded(self.pool, self._timeout, self._describe) as conn:
            if not transaction:
                return await fn(conn)
            async with conn.transaction():
                return await fn(conn)

    # ---- reads ----
    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        row = await self._call(lambda conn: conn.fetchrow(self._sql_get, request.key), retry=True)
        return None if row is None else state.GetResponse(row[0], str(row[1]))

    async def bulk_get(self, requests: Sequence[state.GetRequest], parallelism: int = 0) -> list[state.BulkGetItem]:
        keys = list(dict.fromkeys(r.key for r in requests))
        rows = await self._call(lambda conn: conn.fetch(self._sql_bulk_get, keys), retry=True)
        found = {row[0]: state.GetResponse(row[1], str(row[2])) for row in rows}
        return [state.BulkGetItem(r.key, found.get(r.key)) for r in requests]

    # ---- writes ----
    async def _apply(self, conn: asyncpg.Connection, op: state.Operation) -> None:
        if isinstance(op, state.SetRequest):
            ttl = self._ttl(op)
            if op.etag:
                status = await conn.execute(self._sql_update, op.key, op.value, ttl, state.parse_version(op.etag))
            elif op.concurrency == state.FIRST_WRITE:
                status = await conn.execute(self._sql_insert_new, op.key, op.value, ttl)
            else:
                status = await conn.execute(self._sql_upsert, op.key, op.value, ttl)
            if postgres.rows(status) == 0:
                raise ETagMismatchError(f"possible etag mismatch: key {op.key} was not saved")
        elif op.etag:
            status = await conn.execute(self._sql_delete_if, op.key, state.parse_version(op.etag))
            if postgres.rows(status) == 0:
                raise ETagMismatchError(f"possible etag mismatch: key {op.key} was not deleted")
        else:
            await conn.execute(self._sql_delete, [op.key])

    async def _upsert_all(self, requests: Sequence[state.SetRequest]) -> None:
        rows = [(r.key, r.value, self._ttl(r)) for r in requests]

        await self._call(lambda conn: conn.executemany(self._sql_upsert, rows), transaction=True)

    async def _delete_all(self, requests: Sequence[state.DeleteRequest]) -> None:
        keys = [r.key for r in requests]
        await self._call(lambda conn: conn.execute(self._sql_delete, keys))

    async def ping(self) -> None:
        await self._call(lambda conn: conn.fetchval("SELECT 1"), retry=True)

    async def close(self) -> None:
        await self._stop_purger()
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5.0)
            except Exception as exc:  # closing must not raise
                log.warning("closing postgresql pool failed: %s", exc)
                self._pool.terminate()
            self._pool = None
