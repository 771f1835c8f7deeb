"""MySQL/MariaDB sequencer: one row per key, advanced atomically with LAST_INSERT_ID(expr).

`INSERT ... ON DUPLICATE KEY UPDATE v = LAST_INSERT_ID(v + n)` row-locks the key and hands
the new value back in the OK packet, so a reservation is one round trip and no transaction.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import aiomysql

from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import RangeSequencer, check_count
from layotto.components.sequencer.sqltable import once_more_on_outage, table_name
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError

# Client-side codes for "no connection" (CR_CONNECTION_ERROR .. CR_SERVER_LOST and friends),
# and the server shutting down.
_CONNECTION_CODES = {1053, 2002, 2003, 2006, 2013, 2055}


@dataclass(frozen=True)
class GoDsn:
    user: str
    password: str
    host: str
    port: int
    database: str
    params: dict[str, str]


def parse_go_dsn(dsn: str) -> GoDsn:
    """`user:password@tcp(host:port)/dbname?param=value`, as go-sql-driver/mysql reads it."""
    head, slash, tail = dsn.rpartition("/")
    if not slash:
        raise ValueError("missing '/' before the database name")
    database, _, query = tail.partition("?")
    credentials, at, address = head.rpartition("@")
    if not at:
        credentials, address = "", head
    user, _, password = credentials.partition(":")
    host, port = "127.0.0.1", 3306
    if address:
        net, paren, rest = address.partition("(")
        if net not in ("tcp", "") or (paren and not rest.endswith(")")):
            raise ValueError(f"unsupported address {address!r} (use tcp(host:port))")
        hostport = rest[:-1] if paren else ""
        if hostport:
            name, colon, number = hostport.rpartition(":")
            host, port = (name.strip("[]"), int(number)) if colon else (hostport, 3306)
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    return GoDsn(unquote(user), unquote(password), host, port, unquote(database), params)


class MysqlSequencer(RangeSequencer):
    _pool: Any = None
    _where = ""

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        raw = metadata.required("connectionString")
        try:
            dsn = parse_go_dsn(raw)
        except ValueError as exc:
            raise ConfigError(f"connectionString is not a MySQL DSN: {exc}", f"{metadata.where}.metadata") from None
        self._where = f"{dsn.host}:{dsn.port}"
        table = table_name(metadata)
        self._reserve_sql = (
            f"INSERT INTO {table} (seq_key, seq_value) VALUES (%s, LAST_INSERT_ID(%s))"
            " ON DUPLICATE KEY UPDATE seq_value = LAST_INSERT_ID(seq_value + VALUES(seq_value))"
        )
        self._raise_sql = (
            f"INSERT INTO {table} (seq_key, seq_value) VALUES (%s, %s)"
            " ON DUPLICATE KEY UPDATE seq_value = GREATEST(seq_value, VALUES(seq_value))"
        )
        timeout = metadata.get_duration("timeout", 5.0)
        try:
            self._pool = await aiomysql.create_pool(
                host=dsn.host,
                port=dsn.port,
                user=dsn.user,
                password=dsn.password,
                db=dsn.database,
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
        return BackendUnavailableError(f"mysql at {self._where} is unavailable: {exc}")

    async def _execute(self, sql: str, args: tuple[object, ...]) -> int:
        """Run one statement on a pooled connection; returns the insert id it reported."""

        async def run() -> int:
            try:
                async with self._pool.acquire() as conn, conn.cursor() as cursor:
                    await cursor.execute(sql, args)
                    return int(cursor.lastrowid or 0)
            except (aiomysql.OperationalError, aiomysql.InterfaceError) as exc:
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
                if isinstance(exc, aiomysql.InterfaceError) or code in _CONNECTION_CODES:
                    raise self._unavailable(exc) from exc
                raise ComponentError(f"mysql sequencer failed: {exc}") from exc
            except (OSError, TimeoutError) as exc:
                raise self._unavailable(exc) from exc
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
