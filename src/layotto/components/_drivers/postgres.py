"""PostgreSQL through asyncpg, for the state, lock, sequencer and binding components: reading a
connection string, telling an outage from a failed statement, and bounded calls (sql.guarded).

TLS is libpq's: `sslmode` (disable, allow, prefer -- asyncpg's default --, require, verify-ca,
verify-full), `sslrootcert`, `sslcert`, `sslkey`, `sslpassword`, `sslcrl`, and the protocol
bounds, in a URL's query or a key=value string; asyncpg applies them as libpq does. The files
they name are checked before connecting, so a missing one is a ConfigError naming it.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg

from layotto.components._drivers import sql
from layotto.errors import ConfigError

#: asyncpg's errors for "the server or the connection is gone" (refused, reset, admin shutdown,
#: cannot connect now, too slow).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
#: The same plus InterfaceError ("connection is closed", "pool is closing"), for statements of
#: the component's own: asyncpg also raises InterfaceError for a wrong number of arguments,
#: which for SQL an app sent is the app's error, not an outage.
UNAVAILABLE: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.exceptions.InterfaceError)

#: libpq keyword -> asyncpg.connect argument.
_KEYWORDS = {
    "host": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "database": "database",
    "connect_timeout": "timeout",
}
#: libpq's TLS keywords, which asyncpg takes in a DSN only: a key=value string's go to asyncpg as
#: a DSN beside its other arguments. Those naming files are checked before connecting.
_TLS_KEYWORDS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
)
_TLS_FILES = ("sslrootcert", "sslcert", "sslkey", "sslcrl")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def connect_args(connection_string: str, where: str) -> dict[str, Any]:
    """asyncpg.connect/create_pool arguments from a `postgres://` URL or a libpq `key=value ...`
    string (Dapr's examples use both); `where` names the metadata key."""
    text = connection_string.strip()
    if text.startswith(("postgres://", "postgresql://")):
        _check_tls(dict(parse_qsl(urlsplit(text).query)), where)
        return {"dsn": text}
    args: dict[str, Any] = {}
    tls: dict[str, str] = {}
    try:
        for part in shlex.split(text):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError("expected key=value pairs (quote a value that holds spaces)")
            target = _KEYWORDS.get(key.lower())
            if key.lower() in _TLS_KEYWORDS:
                tls[key.lower()] = value
            elif target == "port":
                args[target] = int(value)
            elif target == "timeout":
                args[target] = float(value)
            elif target is not None:  # pgx-only options (pool_max_conns, ...) have no asyncpg equivalent
                args[target] = value
    except ValueError as exc:
        raise ConfigError(f"connectionString is not a PostgreSQL URL or key=value list: {exc}", where) from None
    _check_tls(tls, where)
    if set(tls) == {"sslmode"}:
        args["ssl"] = tls["sslmode"]
    elif tls:
        # The other arguments, given beside it, take precedence over the DSN's (empty) ones.
        args["dsn"] = "postgresql://?" + urlencode(tls)
    return args


def _check_tls(params: dict[str, str], where: str) -> None:
    mode = params.get("sslmode")
    if mode is not None and mode not in _SSLMODES:
        raise ConfigError(f"sslmode {mode!r} is not one of {', '.join(_SSLMODES)}", where)
    for key in _TLS_FILES:
        path = params.get(key)
        # libpq's "system" root store, which asyncpg takes too.
        if path and not (key == "sslrootcert" and path == "system") and not Path(path).expanduser().is_file():
            raise ConfigError(f"{key} names no readable file: {path!r}", where)


def address(args: dict[str, Any]) -> str:
    """Where `args` (from connect_args) connect to, for messages: never the password."""
    if "dsn" in args and urlsplit(str(args["dsn"])).netloc:
        return str(args["dsn"]).rpartition("@")[2].partition("?")[0]
    host = args.get("host", "localhost")
    return f"{host}:{args.get('port', 5432)}/{args.get('database', '')}"


def rows(status: str) -> int:
    """Rows a statement touched, from asyncpg's command tag ("INSERT 0 3", "DELETE 2"); 0 if none."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.exceptions.InterfaceError:
        return True  # a lost connection detaches its proxy from the pool: every call raises


class _Pool:
    """asyncpg's side of sql.guarded: a pooled connection is a PoolConnectionProxy."""

    async def acquire(self, pool: Any) -> Any:
        return await pool.acquire()

    async def release(self, pool: Any, conn: Any, budget: float) -> None:
        # A reset that fails or overruns makes asyncpg terminate the connection; the pool
        # dials a new one when needed, and the call itself has its answer already.
        with contextlib.suppress(Exception):
            await pool.release(conn, timeout=budget)

    def cut(self, conn: Any) -> None:
        # terminate(), not close(): close() waits for the server's goodbye, and a query timeout
        # would send its cancel request over a NEW connection to the same hung server.
        if not _closed(conn):
            conn.terminate()

    def outage(self, exc: BaseException, conn: Any) -> bool:
        if isinstance(exc, CONNECTION_ERRORS):
            return True
        # "connection is closed" / "pool is closing"; with an open connection an InterfaceError
        # is the statement's fault (a wrong number of arguments), not an outage.
        return isinstance(exc, asyncpg.exceptions.InterfaceError) and (conn is None or _closed(conn))


_POOL = _Pool()


def guarded(pool: asyncpg.Pool, seconds: float, describe: str) -> contextlib.AbstractAsyncContextManager[Any]:
    """sql.guarded on an asyncpg pool: a connection for one call that must end within `seconds`."""
    return sql.guarded(pool, seconds, describe, _POOL)
