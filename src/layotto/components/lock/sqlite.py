"""Lock in a SQLite file (type `sqlite`, metadata `databasePath`): for sidecars sharing one host.

Each operation is one statement, which SQLite runs atomically under its database write lock,
so several sidecar processes may share the file. Expiry is by wall-clock timestamps of the
sidecars, which share one host clock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import aiosqlite

from layotto.components._drivers import sql, sqlite
from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import _sql
from layotto.components.lock import base as lock
from layotto.errors import BackendUnavailableError, ComponentError


class SqliteLock(lock.LockStore):
    metadata_keys = ("databasePath", "tableName", "timeout")
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _db: aiosqlite.Connection | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._path = await asyncio.to_thread(sqlite.database_path, metadata.required("databasePath"))
        self._busy_timeout = metadata.get_duration("timeout", 5.0)
        t = sql.table_name(metadata, _sql.DEFAULT_TABLE)
        self._sql_lock = (
            f"INSERT INTO {t} (resource, owner, expires_at) VALUES (?, ?, ?)"
            f" ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
            f" WHERE {t}.expires_at <= ?"
        )
        self._sql_unlock = f"DELETE FROM {t} WHERE resource = ? AND owner = ? AND expires_at > ?"
        self._sql_extend = f"UPDATE {t} SET expires_at = ? WHERE resource = ? AND owner = ? AND expires_at > ?"
        self._sql_owner = f"SELECT owner FROM {t} WHERE resource = ? AND expires_at > ?"
        self._sql_create = (
            f"CREATE TABLE IF NOT EXISTS {t} (resource TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)"
        )
        await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        if self._db is None:
            try:
                db = await sqlite.connect(self._path, self._busy_timeout)
                await db.execute(self._sql_create)
            except (sqlite3.Error, OSError) as exc:
                raise BackendUnavailableError(f"sqlite database {self._path} cannot be opened: {exc}") from exc
            self._db = db
        return self._db

    async def _run(self, sql: str, args: tuple[object, ...]) -> tuple[int, tuple[object, ...] | None]:
        db = await self._connect()
        try:
            async with db.execute(sql, args) as cursor:
                row = await cursor.fetchone()
                return cursor.rowcount, None if row is None else tuple(row)
        except sqlite3.OperationalError as exc:
            raise BackendUnavailableError(f"sqlite database {self._path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise ComponentError(f"sqlite lock error: {exc}") from exc

    async def _owner(self, key: str) -> str | None:
        _, row = await self._run(self._sql_owner, (key, time.time()))
        return None if row is None else str(row[0])

    async def ping(self) -> None:
        await self._run("SELECT 1", ())

    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        now = time.time()
        changed, _ = await self._run(self._sql_lock, (request.key, request.owner, now + request.expire, now))
        return changed > 0

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        changed, _ = await self._run(self._sql_unlock, (request.key, request.owner, time.time()))
        if changed > 0:
            return lock.LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        now = time.time()
        changed, _ = await self._run(self._sql_extend, (now + request.expire, request.key, request.owner, now))
        if changed > 0:
            return lock.LockStatus.SUCCESS
        return _sql.miss_status(await self._owner(request.key), request.owner)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
