"""Automatic pipelining for redis-py's asyncio client.

`AutoPipelineRedis` is a `redis.asyncio.Redis` whose commands share one connection: every
command issued in the same event-loop iteration is written in one batch (one syscall, one
round trip), and the replies, which Redis sends back in order, resolve the callers' futures
first-in first-out. A GetState under load then costs a few microseconds of Python on the
client side instead of a pool checkout, a lock and a stream read per call (~100 us).

Everything else behaves as redis-py: the same methods, the same response callbacks (so
`hgetall` still returns a dict, `set` a bool), the same exception classes (ResponseError,
NoScriptError, ...). Commands that need a connection of their own -- blocking reads, WAIT,
WATCH/MULTI/EXEC, SELECT, pub/sub -- and `pipeline()` go through the ordinary pool.

Only redis-py's public surface is used (the client's `execute_command`, `response_callbacks`
and exception classes); replies are parsed by hiredis, which redis-py itself uses when present.

Failure semantics: when the shared connection breaks, every command in flight on it fails
with redis' ConnectionError (components map it to BackendUnavailableError), read-only
commands are retried once on a new connection, and the next command reconnects. A reply
that does not come within `socket_timeout` fails everything in flight with TimeoutError
and drops the connection: a stalled server cannot hold callers forever.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as errors
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Commands that block the connection, change its state, or expect a dedicated one.
_UNSHARED = frozenset(
    {
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BLMOVE",
        "BLMPOP",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "WAIT",
        "WAITAOF",
        "WATCH",
        "UNWATCH",
        "MULTI",
        "EXEC",
        "DISCARD",
        "SELECT",
        "AUTH",
        "HELLO",
        "RESET",
        "QUIT",
        "CLIENT",
        "MONITOR",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
    }
)
#: Commands with a BLOCK option: shared only when called without it.
_MAY_BLOCK = frozenset({"XREAD", "XREADGROUP"})
#: Safe to send again when the connection died before the reply came (no side effect).
_IDEMPOTENT = frozenset(
    {"GET", "MGET", "HGET", "HGETALL", "HMGET", "EXISTS", "TTL", "PTTL", "TYPE", "PING", "STRLEN", "HLEN", "XLEN"}
)

_CRLF = b"\r\n"
#: What the reply reader returns while a reply is still incomplete.
INCOMPLETE: Any = object()

# The exception class redis-py raises for each error code, so callers can catch NoScriptError,
# ReadOnlyError, ... as they do with redis-py's own connections. As there, the code is cut off
# the message of these; "ERR" maps by the whole message.
_ERROR_CODES: dict[str, type[errors.RedisError]] = {
    "OOM": errors.OutOfMemoryError,
    "WRONGPASS": errors.AuthenticationError,
    "EXECABORT": errors.ExecAbortError,
    "LOADING": errors.BusyLoadingError,
    "NOSCRIPT": errors.NoScriptError,
    "READONLY": errors.ReadOnlyError,
    "NOAUTH": errors.AuthenticationError,
    "NOPERM": errors.NoPermissionError,
    "ASK": errors.AskError,
    "TRYAGAIN": errors.TryAgainError,
    "MOVED": errors.MovedError,
    "CLUSTERDOWN": errors.ClusterDownError,
    "CROSSSLOT": errors.ClusterCrossSlotError,
    "MASTERDOWN": errors.MasterDownError,
}
_ERR_MESSAGES: dict[str, type[errors.RedisError]] = {
    "max number of clients reached": errors.ConnectionError,
    "invalid password": errors.AuthenticationError,
    "wrong number of arguments for 'auth' command": errors.AuthenticationWrongNumberOfArgsError,
    "wrong number of arguments for 'AUTH' command": errors.AuthenticationWrongNumberOfArgsError,
    "AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?": errors.AuthenticationError,
    "Client sent AUTH, but no password is set": errors.AuthenticationError,
}


def reply_error(message: str) -> errors.RedisError:
    """The exception for an error reply (`message` without its leading '-')."""
    code, _, rest = message.partition(" ")
    if code == "ERR":
        return _ERR_MESSAGES.get(rest, errors.ResponseError)(rest)
    kind = _ERROR_CODES.get(code)
    return errors.ResponseError(message) if kind is None else kind(rest)


def reply_reader() -> hiredis.Reader:
    """A RESP2 reply parser: feed() it bytes, gets() returns one reply at a time or INCOMPLETE.

    Error replies come back as exception objects (raised by the caller for a top-level reply,
    left in place inside arrays, as redis-py does); a malformed stream raises ConnectionError.
    """
    return hiredis.Reader(protocolError=RedisConnectionError, replyError=reply_error, notEnoughData=INCOMPLETE)


def encode_other(arg: Any) -> bytes:
    """What redis-py's encoder makes of an argument that is not exactly bytes, str or int."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, memoryview):
        return arg.tobytes()
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return repr(arg).encode()
    raise errors.DataError(
        f"Invalid input of type: '{type(arg).__name__}'. Convert to a bytes, string, int or float first."
    )


def pack(args: tuple[object, ...]) -> bytes:
    """One command in RESP: `*<n>` then `$<len>` + bytes for each argument."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = cast(bytes, arg)
        elif kind is str:
            data = cast(str, arg).encode()
        elif kind is int:
            data = b"%d" % cast(int, arg)
        else:
            data = encode_other(arg)
        append(b"$%d\r\n" % len(data))
        append(data)
        append(_CRLF)
    return b"".join(parts)


class _Pipe(asyncio.Protocol):
    """One connection: batches writes per loop iteration and resolves replies in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.broken = False
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._out: list[bytes] = []
        self._reader = reply_reader()
        self._read_timeout = read_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._answered = 0
        self._answered_at_arm = 0

    # ---- writing ----
    def send(self, command: bytes) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        if self.broken:
            future.set_exception(RedisConnectionError("Connection to redis lost"))
            return future
        waiters = self.waiters
        if not waiters and self.transport is not None:
            # An idle connection: nothing to batch with, so skip the extra loop iteration.
            waiters.append(future)
            self.transport.write(command)
            if self._watchdog is None and self._read_timeout:
                self._arm()
            return future
        waiters.append(future)
        out = self._out
        out.append(command)
        if len(out) == 1:
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is None or self.broken:
            return  # the waiters were failed when the connection broke
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._watchdog is None and self._read_timeout:
            self._arm()

    # ---- stalled server ----
    def _arm(self) -> None:
        assert self._read_timeout is not None
        self._answered_at_arm = self._answered
        self._watchdog = self.loop.call_later(self._read_timeout, self._check)

    def _check(self) -> None:
        """One timer per connection, not per command: fires when nothing came back for a whole period."""
        self._watchdog = None
        if not self.waiters or self.broken:
            return
        if self._answered == self._answered_at_arm:
            self.fail(RedisTimeoutError(f"Timeout reading from redis: no reply within {self._read_timeout}s"))
            return
        self._arm()

    # ---- reading ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiters = self.waiters
        try:
            while (value := reader.gets()) is not INCOMPLETE:
                self._answered += 1
                if not waiters:
                    raise RedisConnectionError("protocol error: a reply nobody asked for")
                future = waiters.popleft()
                if future.done():  # the caller was cancelled
                    continue
                if isinstance(value, BaseException):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        except RedisConnectionError as exc:  # hiredis's "Protocol error, ..." or the one above
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Fail everything in flight and drop the connection (it may be out of step now)."""
        self.broken = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiters, self.waiters = self.waiters, collections.deque()
        for future in waiters:
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reason = f"{exc}" if exc else "closed by the server"
        self.fail(RedisConnectionError(f"Connection to redis lost: {reason}"))


class SharedConnection:
    """One pipelined connection to a Redis server, opened on first use and after a failure.

    It speaks RESP2, so replies keep RESP2's shapes (HGETALL a flat list, XREADGROUP a list of
    streams) for the hot paths that read them raw with `execute` / `call`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 5.0,
    ) -> None:
        self.address = f"{host}:{port}"
        self._host, self._port, self._db = host, port, db
        self._username, self._password, self._ssl = username, password, ssl_context
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Future[_Pipe] | None = None

    async def _open(self) -> _Pipe:
        loop = asyncio.get_running_loop()
        try:
            _, pipe = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Pipe(loop, self._read_timeout),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            raise RedisTimeoutError(f"Timeout connecting to {self.address}") from None
        except OSError as exc:
            detail = exc.strerror or str(exc)
            raise RedisConnectionError(f"Error {exc.errno} connecting to {self.address}. {detail}.") from exc
        setup: list[tuple[object, ...]] = []
        if self._password:
            setup.append(("AUTH", self._username, self._password) if self._username else ("AUTH", self._password))
        if self._db:
            setup.append(("SELECT", self._db))
        try:
            for command in setup:
                await pipe.send(pack(command))
        except BaseException:
            pipe.fail(RedisConnectionError("connection setup failed"))
            raise
        return pipe

    async def _connected(self) -> _Pipe:
        pipe = self._pipe
        if pipe is not None and not pipe.broken:
            return pipe
        # Concurrent callers share one connection attempt.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            pipe = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        self._pipe = pipe
        return pipe

    async def call(self, command: bytes, *, retry: bool = False) -> Any:
        """Send one encoded command (see `pack`) and return its reply (an error reply is raised).

        `retry`: once more on a new connection when the old one died first -- only for
        commands without side effects, since a lost reply may mean the command did run.
        """
        pipe = self._pipe
        if pipe is None or pipe.broken:
            pipe = await self._connected()
        try:
            return await pipe.send(command)
        except RedisConnectionError:
            if not retry:
                raise
        return await (await self._connected()).send(command)

    async def execute(self, *args: object, retry: bool = False) -> Any:
        return await self.call(pack(args), retry=retry)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        pipe, self._pipe = self._pipe, None
        if pipe is not None and not pipe.broken:
            pipe.fail(RedisConnectionError("client closed"))


class AutoPipelineRedis(aioredis.Redis):
    """`redis.asyncio.Redis` with automatic pipelining on `shared` (see module doc).

    It owns `connection_pool`, the connections for the commands that cannot be shared. The
    pool must speak RESP2, as the shared connection does: the client's response callbacks,
    chosen by redis-py for the pool's protocol, then fit the replies of both.
    """

    def __init__(self, connection_pool: aioredis.ConnectionPool, shared: SharedConnection) -> None:
        super().__init__(connection_pool=connection_pool)
        # As Redis.from_pool: closing the client closes its pool.
        self.auto_close_connection_pool = True
        if str(self.connection_pool.connection_kwargs.get("protocol")) != "2":
            raise ValueError("an AutoPipelineRedis pool must be made with protocol=2, the shared connection's")
        self.shared = shared
        # Decoding replies is per connection in redis-py: keep that path for decode_responses.
        self._shareable = not self.get_encoder().decode_responses  # type: ignore[no-untyped-call]

    def _shared(self, name: str, args: tuple[Any, ...]) -> bool:
        if not self._shareable or name in _UNSHARED:
            return False
        return not (name in _MAY_BLOCK and any(isinstance(a, (str, bytes)) and str(a).upper() == "BLOCK" for a in args))

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0] if type(args[0]) is str else str(args[0])
        name = name.upper()
        if not self._shared(name, args):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        if " " in name:  # "SCRIPT LOAD": the server wants the words as separate arguments
            args = (*args[0].split(), *args[1:])
        try:
            response = await self.shared.call(pack(args), retry=name in _IDEMPOTENT)
        except errors.ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        if options:
            options.pop(EMPTY_RESPONSE, None)
            options.pop(NEVER_DECODE, None)
            options.pop("keys", None)
        callback = self.response_callbacks.get(name)
        if callback is None:
            return response
        result = callback(response, **options)
        if asyncio.iscoroutine(result):
            return await result
        return result

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.shared.close()
        await super().aclose(close_connection_pool)
