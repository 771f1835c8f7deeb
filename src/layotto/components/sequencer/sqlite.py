"""SQLite sequencer: one row per key in a local database file (one host; several sidecars
on it may share the file: each upsert runs in its own write transaction)."""

from __future__ import annotations

import asyncio

import aiosqlite

from layotto.components._drivers import sqlite
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import RangeSequencer, check_count
from layotto.components.sequencer.sqltable import table_name
from layotto.errors import BackendUnavailableError, ComponentError


class SqliteSequencer(RangeSequencer):
    metadata_keys = ("databasePath", "tableName", "timeout", "segmentCacheEnable", "segmentStep", "keyPrefix")
    _db: aiosqlite.Connection | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        self._path = await asyncio.to_thread(sqlite.database_path, metadata.required("databasePath"))
        table = table_name(metadata)
        self._reserve_sql = (
            f"INSERT INTO {table} (seq_key, seq_value) VALUES (?, ?)"
            " ON CONFLICT (seq_key) DO UPDATE SET seq_value = seq_value + excluded.seq_value"
            " RETURNING seq_value"
        )
        self._raise_sql = (
            f"INSERT INTO {table} (seq_key, seq_value) VALUES (?, ?)"
            " ON CONFLICT (seq_key) DO UPDATE SET seq_value = max(seq_value, excluded.seq_value)"
        )
        busy_timeout = metadata.get_duration("timeout", 5.0)
        try:
            self._db = await sqlite.connect(self._path, busy_timeout)
            await self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (seq_key TEXT PRIMARY KEY, seq_value INTEGER NOT NULL)"
            )
        except aiosqlite.Error as exc:
            raise BackendUnavailableError(f"sqlite database {self._path} cannot be opened: {exc}") from exc
        await super().init(metadata, context)

    async def _run(self, sql: str, key: str, value: int) -> int:
        assert self._db is not None
        try:
            async with self._db.execute(sql, (key, value)) as cursor:
                row = await cursor.fetchone()
        except aiosqlite.OperationalError as exc:
            raise BackendUnavailableError(f"sqlite database {self._path}: {exc}") from exc
        except aiosqlite.Error as exc:
            raise ComponentError(f"sqlite sequencer failed on {key}: {exc}") from exc
        return int(row[0]) if row else 0

    async def reserve(self, key: str, count: int) -> int:
        check_count(count)
        return await self._run(self._reserve_sql, key, count) - count + 1

    async def raise_to(self, key: str, floor: int) -> None:
        await self._run(self._raise_sql, key, floor)

    async def ping(self) -> None:
        assert self._db is not None
        try:
            await self._db.execute("SELECT 1")
        except aiosqlite.Error as exc:
            raise BackendUnavailableError(f"sqlite database {self._path}: {exc}") from exc

    async def close(self) -> None:
        await super().close()
        if self._db is not None:
            await self._db.close()
