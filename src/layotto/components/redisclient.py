"""One place where Redis connections are made from upstream metadata, for every block.

Connection pooling, reconnects and timeouts live here (in redis-py's asyncio client), so a
component only issues commands and maps `redis.ConnectionError` to BackendUnavailableError.
"""

from __future__ import annotations

import asyncio
import collections
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.components.base import Metadata
from layotto.errors import BackendUnavailableError, ConfigError

#: Errors that mean "the server is not there right now".
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def split_host(address: str, default_port: int = 6379) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep:
        return address.strip(), default_port
    return host.strip("[]"), int(port)


def connect(metadata: Metadata, *, host_key: str = "redisHost") -> aioredis.Redis:
    """A pooled client for `redisHost` (+ redisPassword, redisUsername, redisDB/db, enableTLS,
    maxRetries, maxRetryBackoff, dialTimeout, readTimeout, poolSize)."""
    address = metadata.get_str(host_key)
    if not address:
        raise ConfigError("redis store error: missing host address", f"{metadata.where}.metadata.{host_key}")
    host, port = split_host(address)
    retries = metadata.get_int("maxRetries", 3)
    backoff_cap = metadata.get_duration("maxRetryBackoff", 0.512)
    db = metadata.get_int("redisDB", metadata.get_int("db", 0))
    return aioredis.Redis(
        host=host,
        port=port,
        db=db,
        username=metadata.get_str("redisUsername") or None,
        password=metadata.get_str("redisPassword") or None,
        ssl=metadata.get_bool("enableTLS", False),
        socket_connect_timeout=metadata.get_duration("dialTimeout", 5.0),
        socket_timeout=metadata.get_duration("readTimeout", 5.0),
        retry=Retry(ExponentialBackoff(cap=backoff_cap, base=0.008), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=metadata.get_int("poolSize", 0) or None,
        health_check_interval=30,
    )


def unavailable(address: str, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(f"redis at {address} is unavailable: {exc}")


# ---- a lean, multiplexed client for hot paths ----
#
# redis-py spends ~100 us of CPU per command (pool checkout, lock, stream reader, callbacks).
# Hot-path reads (GetState) instead share one connection: each call writes its command and
# awaits a future; replies come back in order and resolve the futures FIFO. Concurrent callers
# are pipelined for free and a call costs a few microseconds of Python.


class _IncompleteReplyError(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def _parse(buf: bytearray, pos: int) -> tuple[object, int]:
    """One RESP2 reply at `pos`: (value, position after it). Errors come back as ResponseError."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _IncompleteReplyError
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            raise _IncompleteReplyError
        return bytes(buf[end + 2 : stop]), stop + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items: list[object] = []
        pos = end + 2
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 58:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 43:  # + simple string
        return bytes(buf[pos + 1 : end]), end + 2
    if kind == 45:  # - error
        return ResponseError(buf[pos + 1 : end].decode(errors="replace")), end + 2
    raise RedisConnectionError(f"unexpected RESP reply type {chr(kind)!r}")


def encode_command(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class _RespProtocol(asyncio.Protocol):
    def __init__(self, read_timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: collections.deque[tuple[asyncio.Future[object], float]] = collections.deque()
        self.buffer = bytearray()
        self.closed = False
        self._read_timeout = read_timeout
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[object]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self.waiters.append((future, loop.time()))
        self.transport.write(command)
        if self._watchdog is None and self._read_timeout > 0:
            self._watchdog = loop.call_later(self._read_timeout, self._check_stalled)
        return future

    def _check_stalled(self) -> None:
        """One timer per connection, not per call: abort when the oldest reply is overdue."""
        self._watchdog = None
        if not self.waiters or self.transport is None:
            return
        loop = asyncio.get_running_loop()
        overdue = self.waiters[0][1] + self._read_timeout - loop.time()
        if overdue <= 0:
            self._fail(RedisTimeoutError(f"no reply from redis within {self._read_timeout}s"))
            self.transport.abort()
        else:
            self._watchdog = loop.call_later(overdue, self._check_stalled)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        waiters = self.waiters
        try:
            while waiters and pos < len(buf):
                value, pos_after = _parse(buf, pos)
                pos = pos_after
                future = waiters.popleft()[0]
                if future.done():
                    continue
                if isinstance(value, ResponseError):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        except _IncompleteReplyError:
            pass
        except (ValueError, RedisConnectionError) as exc:
            self._fail(RedisConnectionError(f"malformed reply from redis: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        if pos:
            del buf[:pos]

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        while self.waiters:
            future = self.waiters.popleft()[0]
            if not future.done():
                future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to redis lost: {exc or 'closed by the server'}"))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


class MultiplexedRedis:
    """One shared connection, pipelined; reconnects on the next call after a failure.

    Only for commands whose replies need no per-connection state (no WATCH/MULTI, no
    SUBSCRIBE, no blocking reads): GET/HGETALL/EVALSHA and the like.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        connect_timeout: float = 5.0,
        read_timeout: float = 5.0,
    ) -> None:
        self.address = f"{host}:{port}"
        self._host, self._port = host, port
        self._db, self._username, self._password, self._ssl = db, username, password, ssl
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            loop = asyncio.get_running_loop()
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _RespProtocol(self._read_timeout), self._host, self._port, ssl=self._ssl or None
                ),
                self._connect_timeout,
            )
            setup: list[bytes] = []
            if self._password:
                auth = ("AUTH", self._username, self._password) if self._username else ("AUTH", self._password)
                setup.append(encode_command(*auth))
            if self._db:
                setup.append(encode_command("SELECT", self._db))
            try:
                for command in setup:
                    await protocol.send(command)
            except BaseException:
                if protocol.transport is not None:
                    protocol.transport.abort()
                raise
            self._protocol = protocol
            return protocol

    async def execute_raw(self, command: bytes, *, retry: bool = False) -> object:
        """Send an encoded command; `retry` once on a fresh connection when the old one died
        (only for idempotent commands: a lost reply may mean the command did run)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        try:
            return await protocol.send(command)
        except RedisConnectionError:
            if not retry:
                raise
        return await (await self._connect()).send(command)

    async def execute(self, *args: bytes | str | int, retry: bool = False) -> object:
        return await self.execute_raw(encode_command(*args), retry=retry)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


def connect_multiplexed(metadata: Metadata, *, host_key: str = "redisHost") -> MultiplexedRedis:
    """A MultiplexedRedis from the same metadata as `connect` (connects lazily)."""
    address = metadata.get_str(host_key)
    if not address:
        raise ConfigError("redis store error: missing host address", f"{metadata.where}.metadata.{host_key}")
    host, port = split_host(address)
    return MultiplexedRedis(
        host,
        port,
        db=metadata.get_int("redisDB", metadata.get_int("db", 0)),
        username=metadata.get_str("redisUsername") or None,
        password=metadata.get_str("redisPassword") or None,
        ssl=metadata.get_bool("enableTLS", False),
        connect_timeout=metadata.get_duration("dialTimeout", 5.0),
        read_timeout=metadata.get_duration("readTimeout", 5.0),
    )
