"""MySQL/MariaDB sequencer: one row per key, advanced atomically with LAST_INSERT_ID(expr).

`INSERT ... ON DUPLICATE KEY UPDATE v = LAST_INSERT_ID(v + n)` row-locks the key and hands
the new value back in the OK packet, so a reservation is one round trip and no transaction.
Each call is bounded by `timeout` (5 s): aiomysql has no read timeout of its own.
"""

from __future__ import annotations

import warnings
from typing import Any

import aiomysql

from layotto.components._drivers import mysql, sql
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import RangeSequencer, check_count
from layotto.components.sequencer.sqltable import METADATA_KEYS, once_more_on_outage, table_name
from layotto.errors import BackendUnavailableError, ComponentError


class MysqlSequencer(RangeSequencer):
    metadata_keys = (*METADATA_KEYS, "pemPath")
    _pool: Any = None
    _where = ""
    _timeout = sql.DEFAULT_TIMEOUT

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        where = f"{metadata.where}.metadata.connectionString"
        dsn = mysql.parse_go_dsn(metadata.required("connectionString"), where)
        self._where = dsn.unix_socket or f"{dsn.host}:{dsn.port}"
        table = table_name(metadata)
        self._reserve_sql = (
            f"INSERT INTO {table} (seq_key, seq_value) VALUES (%s, LAST_INSERT_ID(%s))"
            " ON DUPLICATE KEY UPDATE seq_value = LAST_INSERT_ID(seq_value + VALUES(seq_value))"
        )
        self._raise_sql = (
            f"INSERT INTO {table} (seq_key, seq_value) VALUES (%s, %s)"
            " ON DUPLICATE KEY UPDATE seq_value = GREATEST(seq_value, VALUES(seq_value))"
        )
        timeout = self._timeout = sql.call_timeout(metadata, "timeout")
        try:
            self._pool = await aiomysql.create_pool(
                **dsn.connect_args(pem_path=metadata.get_str("pemPath"), where=f"{metadata.where}.metadata.pemPath"),
                autocommit=True,
                minsize=1,
                maxsize=metadata.get_int("maxConns", 10),
                connect_timeout=timeout,
                pool_recycle=3600,
            )
        except (OSError, aiomysql.OperationalError) as exc:
            raise self._unavailable(exc) from exc
        with warnings.catch_warnings():
            # The server's "table already exists" note is the normal case, not news.
            warnings.simplefilter("ignore", aiomysql.Warning)
            await self._execute(
                f"CREATE TABLE IF NOT EXISTS {table}"
                " (seq_key VARCHAR(255) NOT NULL PRIMARY KEY, seq_value BIGINT NOT NULL)",
                (),
            )
        await super().init(metadata, context)

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(f"mysql at {self._where} is unavailable: {mysql.reason(exc)}")

    async def _execute(self, statement: str, args: tuple[object, ...]) -> int:
        """Run one statement on a pooled connection; returns the insert id it reported."""

        async def run() -> int:
            try:
                async with (
                    mysql.guarded(self._pool, self._timeout, f"mysql at {self._where}") as conn,
                    conn.cursor() as cursor,
                ):
                    await cursor.execute(statement, args)
                    return int(cursor.lastrowid or 0)
            except aiomysql.MySQLError as exc:
                raise ComponentError(f"mysql sequencer failed: {exc}") from exc

        return await once_more_on_outage(run)

    async def reserve(self, key: str, count: int) -> int:
        check_count(count)
        return await self._execute(self._reserve_sql, (key, count)) - count + 1

    async def raise_to(self, key: str, floor: int) -> None:
        await self._execute(self._raise_sql, (key, floor))

    async def ping(self) -> None:
        await self._execute("SELECT 1", ())

    async def close(self) -> None:
        await super().close()
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
