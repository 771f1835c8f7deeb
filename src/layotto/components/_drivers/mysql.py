"""MySQL / MariaDB through aiomysql, for the state, lock and sequencer components: reading a
go-sql-driver DSN, telling an outage from a failed statement, and bounded calls (sql.guarded).

TLS is the DSN's `tls` parameter, as go-sql-driver reads it: `true` (the server's certificate
verified against the system's CAs and the host), `custom` (against the CA file of Dapr's
`pemPath` metadata), `skip-verify` (encrypted, not verified), `preferred` (TLS when the server
offers it, unverified), `false`. aiomysql goes on in plaintext when the server offers no TLS;
here a connection that should be TLS and is not is refused before its first statement, as the
Go driver refuses it ("preferred" alone takes plaintext).
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import aiomysql
import pymysql

from layotto.components._drivers import sql
from layotto.config import tls
from layotto.errors import BackendUnavailableError, ConfigError

#: Error codes meaning the server or the connection is gone: too many connections, server
#: shutdown, connection killed, and the client's CR_* "cannot connect / lost connection" family.
GONE_CODES = frozenset({1040, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2014, 2055})

_DSN_FORM = "[user[:password]@][tcp(host:port)|unix(path)]/dbname[?param=value]"


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

    def connect_args(self, *, pem_path: str = "", where: str = "") -> dict[str, Any]:
        """Where and as whom to connect, and over what TLS, as aiomysql.connect/create_pool
        keywords; `pem_path` is Dapr's `pemPath` (the CA of `tls=custom`), `where` its key."""
        args: dict[str, Any] = {"user": self.user or "root", "password": self.password, "db": self.database or None}
        if self.unix_socket:
            args["unix_socket"] = self.unix_socket
        else:
            args["host"], args["port"] = self.host, self.port
        context = tls_context(self.params.get("tls", ""), pem_path, where)
        if context is not None:
            args["ssl"] = context
        return args


class _PreferredTls(ssl.SSLContext):
    """`tls=preferred`: TLS when the server offers it, plaintext otherwise."""


def tls_context(mode: str, pem_path: str, where: str) -> ssl.SSLContext | None:
    """The ssl context of a DSN's `tls` parameter (None: plaintext); a ConfigError for a mode
    go-sql-driver does not know, or a `pemPath` it would not use."""
    lowered = mode.lower()
    if pem_path and lowered != "custom":
        raise ConfigError(
            f"pemPath is set, but the connectionString's tls is {mode or 'not set'}: give tls=custom to use it", where
        )
    if lowered in ("", "false"):
        return None
    if lowered in ("true", "custom"):
        ca = None
        if lowered == "custom":
            if not pem_path:
                raise ConfigError("tls=custom names the CA of the pemPath metadata, which is not set", where)
            if not Path(pem_path).is_file():
                raise ConfigError(f"pemPath names no readable file: {pem_path!r}", where)
            ca = tls.load_material(None, None, tls.Pem(pem_path, "CA certificates", where)).ca
        return tls.client_context(tls.Material(ca=ca))
    if lowered in ("skip-verify", "preferred"):
        context = (_PreferredTls if lowered == "preferred" else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    raise ConfigError(f"tls={mode!r} is not true, custom, skip-verify, preferred or false", where)


def check_tls(conn: Any) -> None:
    """Refuse a connection that should be TLS and is not (aiomysql took plaintext because the
    server offers no TLS, or someone between removed the offer)."""
    context = getattr(conn, "_ssl_context", None)
    if context is None or isinstance(context, _PreferredTls):
        return
    writer = getattr(conn, "_writer", None)
    if writer is None or writer.get_extra_info("ssl_object") is None:
        conn.close()
        raise BackendUnavailableError(
            f"mysql at {getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')} did not start TLS (the DSN asks"
            " for it): the server offers none"
        )


def parse_go_dsn(text: str, where: str) -> GoDsn:
    """`[user[:password]@][net(addr)]/dbname[?param=value&...]`; `where` names the metadata key.

    As the Go driver: the last '@' ends the credentials (a password may hold '@'), the last '/'
    starts the database name, and only the database name and the parameters are URL-unescaped.
    """
    try:
        return _parse_go_dsn(text.strip())
    except ValueError as exc:
        # The text itself is left out of the message: it may carry a password.
        raise ConfigError(f"connectionString is not a MySQL DSN {_DSN_FORM}: {exc}", where) from None


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


def reason(exc: BaseException) -> str:
    """`exc` as text, with what made aiomysql say "Can't connect" (a refused TLS handshake, say)."""
    cause = exc.__cause__
    if error_code(exc) == 2003 and cause is not None and str(cause) not in str(exc):
        return f"{exc}: {cause}"
    return str(exc)


def error_code(exc: BaseException) -> int:
    """The server/client error number of a PyMySQL error (0 when it carries none)."""
    args = getattr(exc, "args", ())
    return int(args[0]) if args and isinstance(args[0], int) else 0


def outage(exc: BaseException) -> bool:
    """Whether `exc` means the server or the connection is gone (not that a statement failed)."""
    if isinstance(exc, (OSError, TimeoutError, pymysql.err.InterfaceError)):
        return True
    code = error_code(exc)
    if code in GONE_CODES:
        return True
    # An OperationalError without a number comes from the client side of a broken connection.
    return isinstance(exc, pymysql.err.OperationalError) and code == 0


class _Pool:
    """aiomysql's side of sql.guarded. It has no read timeout at all, so a hung server blocks a
    read for ever unless the connection is cut."""

    async def acquire(self, pool: Any) -> Any:
        conn = await pool.acquire()
        try:
            check_tls(conn)
        except BackendUnavailableError:
            pool.release(conn)
            raise
        return conn

    async def release(self, pool: Any, conn: Any, budget: float) -> None:
        # Not a coroutine; a closed connection is dropped from the pool, never handed out again.
        pool.release(conn)

    def cut(self, conn: Any) -> None:
        # abort(), not close(): close() waits for unsent bytes, which a hung server never takes.
        # The pending read then ends at once with "Lost connection" (2013).
        writer = getattr(conn, "_writer", None)
        if writer is not None:
            writer.transport.abort()
        conn.close()

    def outage(self, exc: BaseException, conn: Any) -> bool:
        return outage(exc)


_POOL = _Pool()


def guarded(pool: aiomysql.Pool, seconds: float, describe: str) -> contextlib.AbstractAsyncContextManager[Any]:
    """sql.guarded on an aiomysql pool: a connection for one call that must end within `seconds`."""
    return sql.guarded(pool, seconds, describe, _POOL)
