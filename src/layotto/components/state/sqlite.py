"""Embedded state store on a SQLite file (aiosqlite): the default that needs no server.

One row per key: value, a version counter (the etag) and an optional expiry time. The file
is opened in WAL mode so readers never wait for the writer, and several sidecars on one
host may share it (writes take SQLite's lock with BEGIN IMMEDIATE; busy_timeout waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence

import aiosqlite

from layotto.components._drivers import sql, sqlite
from layotto.components.base import ComponentContext, Metadata
from layotto.components.state import base as state
from layotto.components.state.relational import SqlStateStore
from layotto.errors import BackendUnavailableError, ConfigError, ETagMismatchError

log = logging.getLogger("layotto.state.sqlite")

#: SQLite's default limit of host parameters per statement is 32766 (999 before 3.32).
_MAX_PARAMS = 900


class SqliteStateStore(SqlStateStore):
    metadata_keys = (
        "databasePath",
        "connectionString",
        "tableName",
        "ttlInSeconds",
        "busyTimeout",
        "cleanupIntervalInSeconds",
    )

    def __init__(self) -> None:
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        # One transaction at a time on the writer connection: statements of concurrent
        # coroutines must not interleave inside BEGIN ... COMMIT.
        self._write_lock = asyncio.Lock()
        self._table = "state"
        self._path = ""

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        raw_path = metadata.get_str("databasePath") or metadata.get_str("connectionString")
        if not raw_path:
            raise ConfigError("required metadata 'databasePath' is missing", f"{metadata.where}.metadata.databasePath")
        self._table = sql.table_name(metadata, "state")
        self._read_default_ttl(metadata)
        busy = metadata.get_duration("busyTimeout", 5.0)
        if raw_path == ":memory:":
            # A private in-memory database must be one connection, or the reader sees nothing.
            self._path = raw_path
        else:
            self._path = await asyncio.to_thread(sqlite.database_path, raw_path)
        try:
            self._writer = await self._open(busy)
            await self._writer.execute(
                f'CREATE TABLE IF NOT EXISTS "{self._table}" ('
                " key TEXT PRIMARY KEY NOT NULL,"
                " value BLOB NOT NULL,"
                " version INTEGER NOT NULL,"
                " expire REAL)"
            )
            self._reader = self._writer if self._path == ":memory:" else await self._open(busy)
        except sqlite3.Error as exc:
            await self.close()
            raise BackendUnavailableError(f"cannot open sqlite database {self._path}: {exc}") from exc
        self._start_purger(metadata, f"sqlite-purge-{context.name}", (sqlite3.Error,), log)

    async def _open(self, busy_timeout: float) -> aiosqlite.Connection:
        conn = await sqlite.connect(self._path, busy_timeout)
        await conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def _purge_expired(self) -> None:
        async with self._write_lock:
            assert self._writer is not None
            await self._writer.execute(f'DELETE FROM "{self._table}" WHERE expire <= ?', (time.time(),))

    # ---- reads ----
    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        assert self._reader is not None
        try:
            async with self._reader.execute(
                f'SELECT value, version FROM "{self._table}" WHERE key = ? AND (expire IS NULL OR expire > ?)',
                (request.key, time.time()),
            ) as cursor:
                row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"sqlite read failed: {exc}") from exc
        return None if row is None else state.GetResponse(bytes(row[0]), str(row[1]))

    async def bulk_get(self, requests: Sequence[state.GetRequest], parallelism: int = 0) -> list[state.BulkGetItem]:
        assert self._reader is not None
        keys = list(dict.fromkeys(r.key for r in requests))
        found: dict[str, state.GetResponse] = {}
        now = time.time()
        try:
            for start in range(0, len(keys), _MAX_PARAMS):
                chunk = keys[start : start + _MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                async with self._reader.execute(
                    f'SELECT key, value, version FROM "{self._table}"'
                    f" WHERE key IN ({marks}) AND (expire IS NULL OR expire > ?)",
                    (*chunk, now),
                ) as cursor:
                    for key, value, version in await cursor.fetchall():
                        found[key] = state.GetResponse(bytes(value), str(version))
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"sqlite read failed: {exc}") from exc
        return [state.BulkGetItem(r.key, found.get(r.key)) for r in requests]

    # ---- writes ----
    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        assert self._writer is not None
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise BackendUnavailableError(f"sqlite write failed: {exc}") from exc
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            try:
                await self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._writer.execute("ROLLBACK")
                raise BackendUnavailableError(f"sqlite commit failed: {exc}") from exc

    async def _apply_set(self, conn: aiosqlite.Connection, request: state.SetRequest) -> None:
        ttl = self._ttl(request)
        expire = None if ttl is None else time.time() + ttl
        now = time.time()
        table = self._table
        if request.etag:
            version = state.parse_version(request.etag)
            cursor = await conn.execute(
                f'UPDATE "{table}" SET value = ?, version = version + 1, expire = ?'
                " WHERE key = ? AND version = ? AND (expire IS NULL OR expire > ?)",
                (request.value, expire, request.key, version, now),
            )
        elif request.concurrency == state.FIRST_WRITE:
            # Only a missing (or expired) key may be written without an etag.
            cursor = await conn.execute(
                f'INSERT INTO "{table}" (key, value, version, expire) VALUES (?, ?, 1, ?)'
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = 1, expire = excluded.expire"
                f' WHERE "{table}".expire IS NOT NULL AND "{table}".expire <= ?',
                (request.key, request.value, expire, now),
            )
        else:
            cursor = await conn.execute(
                f'INSERT INTO "{table}" (key, value, version, expire) VALUES (?, ?, 1, ?)'
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value, version ="
                f' CASE WHEN "{table}".expire IS NOT NULL AND "{table}".expire <= ? THEN 1'
                f' ELSE "{table}".version + 1 END, expire = excluded.expire',
                (request.key, request.value, expire, now),
            )
        if cursor.rowcount == 0:
            raise ETagMismatchError(f"possible etag mismatch: key {request.key} was not saved")

    async def _apply_delete(self, conn: aiosqlite.Connection, request: state.DeleteRequest) -> None:
        if request.etag:
            version = state.parse_version(request.etag)
            cursor = await conn.execute(
                f'DELETE FROM "{self._table}" WHERE key = ? AND version = ? AND (expire IS NULL OR expire > ?)',
                (request.key, version, time.time()),
            )
            if cursor.rowcount == 0:
                raise ETagMismatchError(f"possible etag mismatch: key {request.key} was not deleted")
        else:
            await conn.execute(f'DELETE FROM "{self._table}" WHERE key = ?', (request.key,))

    async def _run(self, operations: Sequence[state.Operation]) -> None:
        try:
            async with self._transaction() as conn:
                for op in operations:
                    if isinstance(op, state.SetRequest):
                        await self._apply_set(conn, op)
                    else:
                        await self._apply_delete(conn, op)
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"sqlite write failed: {exc}") from exc

    async def ping(self) -> None:
        if self._reader is None:
            raise BackendUnavailableError("sqlite store is not open")
        try:
            async with self._reader.execute("SELECT 1") as cursor:
                await cursor.fetchone()
        except (sqlite3.Error, ValueError) as exc:
            raise BackendUnavailableError(f"sqlite database {self._path} is unavailable: {exc}") from exc

    async def close(self) -> None:
        await self._stop_purger()
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            try:
                await conn.close()
            except Exception as exc:  # closing must not raise
                log.warning("closing sqlite connection failed: %s", exc)
        self._reader = self._writer = None
