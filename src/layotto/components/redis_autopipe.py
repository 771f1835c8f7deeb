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
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis._parsers.response_callbacks import get_response_callbacks
from redis.asyncio.connection import SSLConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
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
_INCOMPLETE: Any = object()


def _encode_arg(arg: object, fallback: Callable[[Any], bytes]) -> bytes:
    kind = type(arg)
    if kind is bytes:
        return cast(bytes, arg)
    if kind is str:
        return cast(str, arg).encode()
    if kind is int:
        return b"%d" % cast(int, arg)
    return fallback(arg)  # redis-py's encoder: floats, memoryviews, and its errors for the rest


def pack(args: tuple[object, ...], fallback: Callable[[Any], bytes]) -> bytes:
    """One command in RESP: `*<n>` then `$<len>` + bytes for each argument."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        data = _encode_arg(arg, fallback)
        append(b"$%d\r\n" % len(data))
        append(data)
        append(_CRLF)
    return b"".join(parts)


def _error(line: bytes) -> BaseException:
    # redis-py's own mapping, so callers see NoScriptError, AuthenticationError, ... as usual.
    return cast(BaseException, BaseParser.parse_error(line.decode(errors="replace")))  # type: ignore[no-untyped-call]


def parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at `pos`: (value, position after it), or (_INCOMPLETE, needed length).

    Errors are returned as exception objects (raised by the caller for a top-level reply,
    left in place inside arrays, as redis-py does).
    """
    end = buf.find(_CRLF, pos)
    if end < 0:
        return _INCOMPLETE, len(buf) + 1
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if stop + 2 > len(buf):
            return _INCOMPLETE, stop + 2
        return buf[end + 2 : stop], stop + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items: list[Any] = []
        pos = end + 2
        for _ in range(count):
            item, pos = parse(buf, pos)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, pos
    if kind == 58:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 43:  # + simple string
        return buf[pos + 1 : end], end + 2
    if kind == 45:  # - error
        return _error(buf[pos + 1 : end]), end + 2
    raise RedisConnectionError(f"protocol error: unexpected reply type {chr(kind)!r}")


class _Pipe(asyncio.Protocol):
    """One connection: batches writes per loop iteration and resolves replies in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.broken = False
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._out: list[bytes] = []
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._need = 0
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
        if self._chunks:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._need:
                return  # a large reply still arriving: do not re-parse it per chunk
            buf = b"".join(self._chunks)
            self._chunks = []
        else:
            buf = data
        waiters = self.waiters
        pos = 0
        size = len(buf)
        try:
            while pos < size:
                value, after = parse(buf, pos)
                if value is _INCOMPLETE:
                    self._chunks = [buf[pos:]] if pos else [buf]
                    self._buffered = size - pos
                    self._need = after - pos
                    return
                pos = after
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
        except (ValueError, IndexError, RedisConnectionError) as exc:
            self.fail(exc if isinstance(exc, RedisConnectionError) else RedisConnectionError(f"protocol error: {exc}"))

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
    """One pipelined connection to a Redis server, opened on first use and after a failure."""

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
        encode: Callable[[Any], bytes] | None = None,
    ) -> None:
        self.address = f"{host}:{port}"
        self._host, self._port, self._db = host, port, db
        self._username, self._password, self._ssl = username, password, ssl_context
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self.encode: Callable[[Any], bytes] = encode or self.encode_other
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Future[_Pipe] | None = None

    @staticmethod
    def encode_other(arg: Any) -> bytes:
        """What redis-py's encoder makes of the rarer argument types."""
        if isinstance(arg, float):
            return repr(arg).encode()
        if isinstance(arg, memoryview):
            return arg.tobytes()
        raise DataError(
            f"Invalid input of type: '{type(arg).__name__}'. Convert to a bytes, string, int or float first."
        )

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
                await pipe.send(pack(command, self.encode))
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
        """Send one encoded command and return its reply (an error reply is raised).

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
        return await self.call(pack(args, self.encode), retry=retry)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        pipe, self._pipe = self._pipe, None
        if pipe is not None and not pipe.broken:
            pipe.fail(RedisConnectionError("client closed"))


class AutoPipelineRedis(aioredis.Redis):
    """`redis.asyncio.Redis` with automatic pipelining on one shared connection (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.connection_pool
        params = pool.connection_kwargs
        ssl_context: ssl.SSLContext | None = None
        if issubclass(pool.connection_class, SSLConnection):
            ssl_context = cast(SSLConnection, pool.make_connection()).ssl_context.get()  # type: ignore[no-untyped-call]
        encoder = pool.get_encoder()  # type: ignore[no-untyped-call]
        self.shared = SharedConnection(
            str(params.get("host", "localhost")),
            int(params.get("port", 6379)),
            db=int(params.get("db", 0) or 0),
            username=params.get("username"),
            password=params.get("password"),
            ssl_context=ssl_context,
            connect_timeout=params.get("socket_connect_timeout"),
            read_timeout=params.get("socket_timeout"),
            encode=encoder.encode,
        )
        # Decoding replies is per connection in redis-py: keep that path for decode_responses.
        self._shareable = not encoder.decode_responses
        # The shared connection speaks RESP2 (redis-py 8 defaults to RESP3 on its own
        # connections); these callbacks give the same Python shapes from RESP2 replies.
        legacy = bool(params.get("legacy_responses", True))
        self._callbacks: dict[str, Any] = {k.upper(): v for k, v in get_response_callbacks(2, legacy).items()}

    def set_response_callback(self, command: str, callback: Any) -> None:
        super().set_response_callback(command, callback)
        self._callbacks[command.upper()] = callback

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
            response = await self.shared.call(pack(args, self.shared.encode), retry=name in _IDEMPOTENT)
        except ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        if options:
            options.pop(EMPTY_RESPONSE, None)
            options.pop(NEVER_DECODE, None)
            options.pop("keys", None)
        callback = self._callbacks.get(name)
        if callback is None:
            return response
        result = callback(response, **options)
        if asyncio.iscoroutine(result):
            return await result
        return result

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.shared.close()
        await super().aclose(close_connection_pool)
