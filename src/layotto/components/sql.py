"""What the SQL-backed components share: reading connection strings, telling an outage
(the server or the connection is gone: retry later, UNAVAILABLE) from a failed statement, and
`guarded`, the one way a component talks to its database: every call bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import aiomysql
import asyncpg
import pymysql

from layotto.components.base import Metadata
from layotto.errors import BackendUnavailableError, ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def sqlite_path(raw: str) -> str:
    """A SQLite `databasePath` made usable: `~` expanded, missing folders created.

    It touches the disk: call it through asyncio.to_thread."""
    path = Path(raw).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def table_name(metadata: Metadata, default: str) -> str:
    """The `tableName` metadata (or `default`): a plain identifier only, as it is spliced into SQL."""
    name = metadata.get_str("tableName") or default
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"tableName {name!r} must be a plain SQL identifier", f"{metadata.where}.metadata.tableName")
    return name


def start_purger(
    metadata: Metadata,
    name: str,
    purge: Callable[[], Awaitable[object]],
    errors: tuple[type[BaseException], ...],
    log: logging.Logger,
) -> asyncio.Task[None] | None:
    """Run `purge` (delete expired rows) every `cleanupIntervalInSeconds` (default 1 h; 0: never).

    A failed round is logged and the next one tried: the rows are invisible to reads anyway.
    """
    interval = metadata.get_duration("cleanupIntervalInSeconds", 3600.0)
    if interval <= 0:
        return None

    async def purge_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await purge()
            except errors as exc:
                log.warning("purging expired state rows failed: %s", exc)

    return asyncio.create_task(purge_forever(), name=name)


async def stop_task(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---- MySQL / MariaDB ----

#: Error codes meaning the server or the connection is gone: too many connections, server
#: shutdown, connection killed, and the client's CR_* "cannot connect / lost connection" family.
MYSQL_GONE_CODES = frozenset({1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2014, 2055})

_MYSQL_DSN_FORM = "[user[:password]@][tcp(host:port)|unix(path)]/dbname[?param=value]"


@dataclass(frozen=True)
class GoDsn:
    """A MySQL DSN as go-sql-driver/mysql reads it (the form Layotto's and Dapr's docs use)."""

    user: str = ""
    password: str = ""
    host: str = "127.0.0.1"
    port: int = 3306
    unix_socket: str | None = None
    database: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def connect_args(self) -> dict[str, Any]:
        """Where and as whom to connect, as aiomysql.connect/create_pool keywords."""
        args: dict[str, Any] = {"user": self.user or "root", "password": self.password, "db": self.database or None}
        if self.unix_socket:
            args["unix_socket"] = self.unix_socket
        else:
            args["host"], args["port"] = self.host, self.port
        return args


def parse_go_dsn(text: str, where: str) -> GoDsn:
    """`[user[:password]@][net(addr)]/dbname[?param=value&...]`; `where` names the metadata key.

    As the Go driver: the last '@' ends the credentials (a password may hold '@'), the last '/'
    starts the database name, and only the database name and the parameters are URL-unescaped.
    """
    try:
        return _parse_go_dsn(text.strip())
    except ValueError as exc:
        # The text itself is left out of the message: it may carry a password.
        raise ConfigError(f"connectionString is not a MySQL DSN {_MYSQL_DSN_FORM}: {exc}", where) from None


def _parse_go_dsn(text: str) -> GoDsn:
    head, slash, tail = text.rpartition("/")
    if not slash:
        raise ValueError("missing '/' before the database name")
    database, _, query = tail.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    credentials, at, address = head.rpartition("@")
    if not at:
        credentials, address = "", head
    user, _, password = credentials.partition(":")
    if not address:
        return GoDsn(user, password, database=unquote(database), params=params)
    net, paren, addr = address.partition("(")
    if paren and not addr.endswith(")"):
        raise ValueError(f"invalid network address {address!r}")
    addr = addr[:-1] if paren else ""
    if net == "unix":
        return GoDsn(user, password, unix_socket=addr or "/tmp/mysql.sock", database=unquote(database), params=params)
    if net not in ("tcp", "tcp6", ""):
        raise ValueError(f"unsupported network {net!r}")
    host, port = split_host_port(addr) if addr else ("127.0.0.1", 3306)
    return GoDsn(user, password, host, port, None, unquote(database), params)


def split_host_port(address: str, default_port: int = 3306) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port`; ValueError for a port that is not a number."""
    name, colon, number = address.strip().rpartition(":")
    if not colon:
        return address.strip(), default_port
    if not number.isdigit():
        raise ValueError(f"invalid port {number!r}")
    return name.strip("[]"), int(number)


def mysql_error_code(exc: BaseException) -> int:
    """The server/client error number of a PyMySQL error (0 when it carries none)."""
    args = getattr(exc, "args", ())
    return int(args[0]) if args and isinstance(args[0], int) else 0


def mysql_outage(exc: BaseException) -> bool:
    """Whether `exc` means the server or the connection is gone (not that a statement failed)."""
    if isinstance(exc, (OSError, TimeoutError, pymysql.err.InterfaceError)):
        return True
    code = mysql_error_code(exc)
    if code in MYSQL_GONE_CODES:
        return True
    # An OperationalError without a number comes from the client side of a broken connection.
    return isinstance(exc, pymysql.err.OperationalError) and code == 0


# ---- PostgreSQL ----

#: asyncpg's errors for "the server or the connection is gone" (refused, reset, admin shutdown,
#: cannot connect now, too slow).
PG_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
#: The same plus InterfaceError ("connection is closed", "pool is closing"), for statements of
#: the component's own: asyncpg also raises InterfaceError for a wrong number of arguments,
#: which for SQL an app sent is the app's error, not an outage.
PG_UNAVAILABLE: tuple[type[BaseException], ...] = (*PG_CONNECTION_ERRORS, asyncpg.exceptions.InterfaceError)

#: libpq keyword -> asyncpg.connect argument.
_PG_KEYWORDS = {
    "host": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "database": "database",
    "sslmode": "ssl",
    "connect_timeout": "timeout",
}


def pg_connect_args(connection_string: str, where: str) -> dict[str, Any]:
    """asyncpg.connect/create_pool arguments from a `postgres://` URL or a libpq `key=value ...`
    string (Dapr's examples use both); `where` names the metadata key."""
    text = connection_string.strip()
    if text.startswith(("postgres://", "postgresql://")):
        return {"dsn": text}
    args: dict[str, Any] = {}
    try:
        for part in shlex.split(text):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError("expected key=value pairs (quote a value that holds spaces)")
            target = _PG_KEYWORDS.get(key.lower())
            if target == "port":
                args[target] = int(value)
            elif target == "timeout":
                args[target] = float(value)
            elif target is not None:  # pgx-only options (pool_max_conns, ...) have no asyncpg equivalent
                args[target] = value
    except ValueError as exc:
        raise ConfigError(f"connectionString is not a PostgreSQL URL or key=value list: {exc}", where) from None
    return args


def pg_address(args: dict[str, Any]) -> str:
    """Where `args` (from pg_connect_args) connect to, for messages: never the password."""
    if "dsn" in args:
        return str(args["dsn"]).rpartition("@")[2].partition("?")[0]
    host = args.get("host", "localhost")
    return f"{host}:{args.get('port', 5432)}/{args.get('database', '')}"


def pg_rows(status: str) -> int:
    """Rows a statement touched, from asyncpg's command tag ("INSERT 0 3", "DELETE 2"); 0 if none."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


# ---- bounded calls ----

#: How long one call may wait for its database when the metadata does not say: long enough for
#: any statement these components send, short enough that a hung server fails the call.
DEFAULT_TIMEOUT = 5.0
#: What returning a connection to its pool may take past the call's own deadline (asyncpg
#: resets it with a round trip); past that the pool drops the connection instead.
_RELEASE_GRACE = 0.5


class NoAnswerError(BackendUnavailableError):
    """The server took the call and did not answer in time.

    The statement may have been applied, so nothing retries such a call by itself: a retry
    could write twice. The connection it used is discarded, never handed out again.
    """


def call_timeout(metadata: Metadata, *keys: str, default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds one call may take: the first of `keys` that is set (a Go duration or a number of
    seconds), else `default`."""
    for key in keys:
        if metadata.get_str(key):
            seconds = metadata.get_duration(key, default)
            if seconds <= 0:
                raise ConfigError(f"'{key}' must be a positive duration, got {metadata[key]!r}", metadata.where)
            return seconds
    return default


class _Postgres:
    """asyncpg: a pooled connection is a PoolConnectionProxy."""

    @staticmethod
    async def acquire(pool: Any) -> Any:
        return await pool.acquire()

    @staticmethod
    async def release(pool: Any, conn: Any, budget: float) -> None:
        # A reset that fails or overruns makes asyncpg terminate the connection; the pool
        # dials a new one when needed, and the call itself has its answer already.
        with contextlib.suppress(Exception):
            await pool.release(conn, timeout=budget)

    @staticmethod
    def cut(conn: Any) -> None:
        # terminate(), not close(): close() waits for the server's goodbye, and a query timeout
        # would send its cancel request over a NEW connection to the same hung server.
        if not _Postgres.closed(conn):
            conn.terminate()

    @staticmethod
    def closed(conn: Any) -> bool:
        try:
            return bool(conn.is_closed())
        except asyncpg.exceptions.InterfaceError:
            return True  # a lost connection detaches its proxy from the pool: every call raises

    @staticmethod
    def outage(exc: BaseException, conn: Any) -> bool:
        if isinstance(exc, PG_CONNECTION_ERRORS):
            return True
        # "connection is closed" / "pool is closing"; with an open connection an InterfaceError
        # is the statement's fault (a wrong number of arguments), not an outage.
        return isinstance(exc, asyncpg.exceptions.InterfaceError) and (conn is None or _Postgres.closed(conn))


class _Mysql:
    """aiomysql: it has no read timeout at all, so a hung server blocks a read for ever."""

    @staticmethod
    async def acquire(pool: Any) -> Any:
        return await pool.acquire()

    @staticmethod
    async def release(pool: Any, conn: Any, budget: float) -> None:
        # Not a coroutine; a closed connection is dropped from the pool, never handed out again.
        pool.release(conn)

    @staticmethod
    def cut(conn: Any) -> None:
        # abort(), not close(): close() waits for unsent bytes, which a hung server never takes.
        # The pending read then ends at once with "Lost connection" (2013).
        writer = getattr(conn, "_writer", None)
        if writer is not None:
            writer.transport.abort()
        conn.close()

    @staticmethod
    def outage(exc: BaseException, conn: Any) -> bool:
        return mysql_outage(exc)


def _driver(pool: Any) -> type[_Postgres] | type[_Mysql]:
    if isinstance(pool, asyncpg.Pool):
        return _Postgres
    if isinstance(pool, aiomysql.Pool):
        return _Mysql
    raise TypeError(f"not an asyncpg or aiomysql pool: {pool!r}")


def no_answer(describe: str, seconds: float) -> str:
    return f"{describe} did not answer within {seconds:g}s"


@contextlib.asynccontextmanager
async def guarded(pool: asyncpg.Pool | aiomysql.Pool, seconds: float, describe: str) -> AsyncIterator[Any]:
    """A pooled connection (asyncpg or aiomysql) for one call that must end within `seconds`.

    `describe` names the backend in messages ("postgresql at host:5432/db"). Acquiring and the
    body share the deadline. When it passes, the connection is cut under the body (not the
    task cancelled: that would make asyncpg cancel over a new connection and leave rollbacks
    hanging): every pending or later statement on it fails at once, the body unwinds, and the
    call raises NoAnswerError. A lost connection raises BackendUnavailableError; any other
    error (a failed statement, the component's own) passes through unchanged.
    """
    driver = _driver(pool)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        async with asyncio.timeout_at(deadline):
            conn = await driver.acquire(pool)
    except TimeoutError as exc:  # before the OSError branch: TimeoutError is an OSError
        raise NoAnswerError(no_answer(describe, seconds)) from exc
    except Exception as exc:
        if driver.outage(exc, None):
            raise BackendUnavailableError(f"{describe} is unavailable: {exc}") from exc
        raise

    cut = False

    def on_deadline() -> None:
        nonlocal cut
        cut = True
        driver.cut(conn)

    timer = loop.call_at(deadline, on_deadline)
    try:
        yield conn
    except asyncio.CancelledError:
        # The caller gave up mid-conversation: what the connection is in the middle of is unknown.
        if not cut:
            driver.cut(conn)
        raise
    except Exception as exc:
        if cut and driver.outage(exc, conn):
            raise NoAnswerError(no_answer(describe, seconds)) from exc
        if driver.outage(exc, conn):
            raise BackendUnavailableError(f"{describe} is unavailable: {exc}") from exc
        raise
    finally:
        timer.cancel()
        await driver.release(pool, conn, max(deadline - loop.time(), _RELEASE_GRACE))
