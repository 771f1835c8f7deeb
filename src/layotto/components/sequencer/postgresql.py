"""PostgreSQL sequencer: one row per key, advanced by a row-locked upsert ... RETURNING.

Each call is bounded by `timeout` (5 s): a hung server fails it with UNAVAILABLE.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from layotto.components._drivers import postgres, sql
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import RangeSequencer, check_count
from layotto.components.sequencer.sqltable import METADATA_KEYS, once_more_on_outage, table_name
from layotto.errors import BackendUnavailableError, ComponentError


class PostgresqlSequencer(RangeSequencer):
    metadata_keys = METADATA_KEYS
    _pool: asyncpg.Pool | None = None
    _address: str

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        where = f"{metadata.where}.metadata.connectionString"
        connect_args = postgres.connect_args(metadata.required("connectionString"), where)
        self._address = postgres.address(connect_args)
        table = table_name(metadata)
        self._reserve_sql = (
            f"INSERT INTO {table} AS t (seq_key, seq_value) VALUES ($1, $2)"
            " ON CONFLICT (seq_key) DO UPDATE SET seq_value = t.seq_value + EXCLUDED.seq_value"
            " RETURNING t.seq_value"
        )
        self._raise_sql = (
            f"INSERT INTO {table} AS t (seq_key, seq_value) VALUES ($1, $2)"
            " ON CONFLICT (seq_key) DO UPDATE SET seq_value = GREATEST(t.seq_value, EXCLUDED.seq_value)"
        )
        self._timeout = sql.call_timeout(metadata, "timeout")
        connect_args.setdefault("timeout", self._timeout)
        try:
            self._pool = await asyncpg.create_pool(
                min_size=1, max_size=metadata.get_int("maxConns", 10), **connect_args
            )
        except postgres.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        try:
            async with self._guarded() as conn:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (seq_key TEXT PRIMARY KEY, seq_value BIGINT NOT NULL)"
                )
        except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
            pass  # another sidecar created it at the same moment
        await super().init(metadata, context)

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(f"postgresql at {self._address} is unavailable: {exc or type(exc).__name__}")

    def _guarded(self) -> AbstractAsyncContextManager[Any]:
        assert self._pool is not None, "init() was not called"
        return postgres.guarded(self._pool, self._timeout, f"postgresql at {self._address}")

    async def _fetchval(self, statement: str, key: str, value: int) -> int:
        async def run() -> int:
            try:
                async with self._guarded() as conn:
                    return int(await conn.fetchval(statement, key, value) or 0)
            except asyncpg.PostgresError as exc:
                raise ComponentError(f"postgresql sequencer failed on {key}: {exc}") from exc

        return await once_more_on_outage(run)

    async def reserve(self, key: str, count: int) -> int:
        check_count(count)
        return await self._fetchval(self._reserve_sql, key, count) - count + 1

    async def raise_to(self, key: str, floor: int) -> None:
        await self._fetchval(self._raise_sql, key, floor)

    async def ping(self) -> None:
        async with self._guarded() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        await super().close()
        if self._pool is not None:
            await self._pool.close()
