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

On a Redis Cluster (`RoutedCluster`) the same is done per node: `ClusterPipes` keeps one
shared connection per master and sends each command to the node serving its key's slot, so
the commands of one loop iteration make one batch per node, not one per cluster. MOVED and
ASK replies are followed there (MOVED also patches redis-py's slot table). Behind Sentinel,
a shared connection asks where the master is each time it (re)connects (`locate`).

Failure semantics: when the shared connection breaks, every command in flight on it fails
with redis' ConnectionError (components map it to BackendUnavailableError), read-only
commands are retried once on a new connection, and the next command reconnects. A reply
that does not come within `socket_timeout` of its command being queued fails everything in
flight with TimeoutError and drops the connection: a stalled server holds no caller longer.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as errors
from redis.asyncio.cluster import RedisCluster
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.crc import key_slot
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
#: Commands whose one key is their first argument: what a cluster may route by slot itself.
#: Anything else (keyless, several keys) takes redis-py's cluster path, which knows them all.
_FIRST_ARG_KEY = frozenset(
    {
        *("GET", "SET", "SETNX", "SETEX", "PSETEX", "GETDEL", "GETEX", "GETSET", "APPEND", "STRLEN"),
        *("INCR", "INCRBY", "INCRBYFLOAT", "DECR", "DECRBY"),
        *("EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST", "TTL", "PTTL", "TYPE"),
        *("HGET", "HSET", "HSETNX", "HMGET", "HMSET", "HGETALL", "HDEL", "HINCRBY", "HEXISTS", "HLEN"),
        *("ZADD", "ZREM", "ZRANGE", "ZRANGEBYSCORE", "ZREMRANGEBYSCORE", "ZSCORE", "ZCARD"),
        *("XADD", "XACK", "XLEN", "XRANGE", "XREVRANGE", "XTRIM", "XDEL", "XAUTOCLAIM", "XCLAIM", "XPENDING"),
        *("XGROUP CREATE", "XGROUP DELCONSUMER", "XGROUP DESTROY", "XGROUP CREATECONSUMER", "XGROUP SETID"),
    }
)
#: Multi-key commands that are routable when given exactly one key.
_ONE_KEY_FORM = frozenset({"DEL", "UNLINK", "EXISTS", "TOUCH"})


def _slot_of(key: object) -> int:
    return int(key_slot(key if isinstance(key, bytes) else str(key).encode()))


def command_key(args: Sequence[Any]) -> Any:
    """The key a cluster routes `args` (a command as redis-py builds it: name first) by, or None
    when it has none or several in different slots."""
    name = (args[0].decode() if isinstance(args[0], bytes) else str(args[0])).upper()
    if name in _FIRST_ARG_KEY or (name in _ONE_KEY_FORM and len(args) == 2):
        return args[1] if len(args) > 1 else None
    keys: Sequence[Any] = ()
    if name in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO") and len(args) > 2:
        keys = args[3 : 3 + int(args[2])]
    elif name in ("XREAD", "XREADGROUP"):
        upper = [a.upper() if isinstance(a, (str, bytes)) else a for a in args]
        marker = "STREAMS" if "STREAMS" in upper else b"STREAMS"
        if marker in upper:
            rest = args[upper.index(marker) + 1 :]
            keys = rest[: len(rest) // 2]
    if not keys or len({_slot_of(k) for k in keys}) != 1:
        return None
    return keys[0]


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
        #: When each waiter's command was queued (loop time), in the waiters' order.
        self._queued_at: collections.deque[float] = collections.deque()
        self._out: list[bytes] = []
        self._reader = reply_reader()
        self._read_timeout = read_timeout
        self._watchdog: asyncio.TimerHandle | None = None

    # ---- writing ----
    def send(self, command: bytes) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        if self.broken:
            future.set_exception(RedisConnectionError("Connection to redis lost"))
            return future
        waiters = self.waiters
        if self._read_timeout:
            now = self.loop.time()
            self._queued_at.append(now)
            if self._watchdog is None:
                self._arm(now + self._read_timeout)
        if not waiters and self.transport is not None:
            # An idle connection: nothing to batch with, so skip the extra loop iteration.
            waiters.append(future)
            self.transport.write(command)
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

    # ---- stalled server ----
    def _arm(self, deadline: float) -> None:
        self._watchdog = self.loop.call_at(deadline, self._check)

    def _check(self) -> None:
        """One timer per connection, not per command, set for the oldest command's deadline.

        Replies come in order, so when the oldest command has waited `read_timeout` the server
        is stalled for every command behind it too: all of them fail now, none waits longer
        than its own `read_timeout` from the moment it was queued.
        """
        self._watchdog = None
        if not self.waiters or self.broken:
            return
        assert self._read_timeout is not None
        deadline = self._queued_at[0] + self._read_timeout
        if self.loop.time() >= deadline:
            self.fail(RedisTimeoutError(f"Timeout reading from redis: no reply within {self._read_timeout}s"))
            return
        self._arm(deadline)

    # ---- reading ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiters = self.waiters
        try:
            queued_at = self._queued_at
            while (value := reader.gets()) is not INCOMPLETE:
                if not waiters:
                    raise RedisConnectionError("protocol error: a reply nobody asked for")
                future = waiters.popleft()
                if queued_at:
                    queued_at.popleft()
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
        self._queued_at.clear()
        for future in waiters:
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        reason = f"{exc}" if exc else "closed by the server"
        self.fail(RedisConnectionError(f"Connection to redis lost: {reason}"))


#: Where the server is, asked again before each (re)connection (Sentinel: the current master).
Locate = Callable[[], Awaitable[tuple[str, int]]]


class SharedConnection:
    """One pipelined connection to a Redis server, opened on first use and after a failure.

    It speaks RESP2, so replies keep RESP2's shapes (HGETALL a flat list, XREADGROUP a list of
    streams) for the hot paths that read them raw with `execute` / `call`.

    With `locate` the server's address is looked up before each connection (Sentinel), and a
    READONLY reply drops the connection: the server it reached is no longer the master, so
    the next command finds the new one instead of failing on the old one forever.
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
        locate: Locate | None = None,
    ) -> None:
        self.address = f"{host}:{port}"
        self._host, self._port, self._db = host, port, db
        self._username, self._password, self._ssl = username, password, ssl_context
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._locate = locate
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Future[_Pipe] | None = None

    async def _open(self) -> _Pipe:
        if self._locate is not None:
            self._host, self._port = await self._locate()
            self.address = f"{self._host}:{self._port}"
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
        except errors.ReadOnlyError:
            if self._locate is None:
                raise
            raise self._demoted(pipe) from None
        return await (await self._connected()).send(command)

    async def call_asking(self, command: bytes) -> Any:
        """`command` right after ASKING on the same connection (a cluster's ASK redirection):
        written in one go, so no other command can come between them."""
        pipe = await self._connected()
        asking, reply = pipe.send(pack(("ASKING",))), pipe.send(command)
        done = await asyncio.gather(asking, reply, return_exceptions=True)
        for result in reversed(done):  # the command's own error first
            if isinstance(result, BaseException):
                raise result
        return done[1]

    def _demoted(self, pipe: _Pipe) -> BaseException:
        pipe.fail(RedisConnectionError(f"{self.address} is no longer the master"))
        return RedisConnectionError(f"{self.address} is no longer the master; the next command finds the new one")

    async def execute(self, *args: object, retry: bool = False) -> Any:
        return await self.call(pack(args), retry=retry)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        pipe, self._pipe = self._pipe, None
        if pipe is not None and not pipe.broken:
            pipe.fail(RedisConnectionError("client closed"))


class Pipelined(Protocol):
    """What the hot paths send raw commands through: one SharedConnection, or one per node
    of a cluster (ClusterPipes)."""

    async def execute(self, *args: object, retry: bool = False) -> Any: ...

    async def close(self) -> None: ...


#: Redirections (MOVED, ASK, TRYAGAIN) one command follows before it gives up.
_REDIRECTS = 16
#: A cluster answering CLUSTERDOWN or TRYAGAIN is mid-failover or mid-migration: a short wait.
_SETTLE = 0.05
#: While a node is down every call fails: the slot table is reloaded at most this often.
_RELOAD_INTERVAL = 0.1


class ClusterPipes:
    """A SharedConnection per node of a Redis Cluster, each command sent to the node serving
    its key's slot; the slot table is redis-py's (`cluster`), patched by MOVED and reloaded
    after a node failed."""

    def __init__(self, cluster: RedisCluster, connect: Callable[[str, int], SharedConnection]) -> None:
        self.cluster = cluster
        self._connect = connect
        self._pipes: dict[tuple[str, int], SharedConnection] = {}
        self._stale = False
        self._reloaded_at = float("-inf")
        self._reloading: asyncio.Future[None] | None = None

    def _pipe(self, host: str, port: int) -> SharedConnection:
        pipe = self._pipes.get((host, port))
        if pipe is None:
            pipe = self._pipes[(host, port)] = self._connect(host, port)
        return pipe

    async def _reload(self) -> None:
        """Reload the slot table once for every caller waiting on it."""
        if self._reloading is None:
            self._reloaded_at = time.monotonic()
            self._reloading = asyncio.ensure_future(self.cluster.nodes_manager.initialize())
        reloading = self._reloading
        try:
            await asyncio.shield(reloading)
            self._stale = False
        except Exception as exc:
            raise RedisConnectionError(f"the cluster's slot table cannot be reloaded: {exc}") from exc
        finally:
            if self._reloading is reloading and reloading.done():
                self._reloading = None

    async def _node(self, key: Any) -> tuple[str, int]:
        await self.cluster.initialize()
        if self._stale and time.monotonic() - self._reloaded_at >= _RELOAD_INTERVAL:
            await self._reload()
        try:
            node = self.cluster.get_node_from_key(key)
        except errors.SlotNotCoveredError as exc:
            self._stale = True
            raise RedisConnectionError(str(exc)) from exc
        assert node is not None
        return node.host, int(node.port)

    async def execute(self, *args: object, retry: bool = False) -> Any:
        key = command_key(args)
        if key is None:
            raise errors.DataError(f"{args[0]!r} has no single key to send it to a cluster node by")
        return await self.route(key, pack(args), retry=retry)

    async def route(self, key: Any, command: bytes, *, retry: bool = False) -> Any:
        """`command` (encoded) on the node serving `key`, following redirections."""
        asking: tuple[str, int] | None = None
        for _ in range(_REDIRECTS):
            host, port = asking or await self._node(key)
            pipe = self._pipe(host, port)
            try:
                if asking is not None:
                    return await pipe.call_asking(command)
                return await pipe.call(command, retry=retry)
            except errors.MovedError as exc:  # before AskError: MovedError derives from it
                asking = None
                await self.cluster.nodes_manager.move_slot(exc)
            except errors.AskError as exc:
                asking = (exc.host, exc.port)
            except (errors.TryAgainError, errors.ClusterDownError) as exc:
                # Mid-failover: the replica taking over the slot may be elected any moment.
                asking = None
                self._stale = isinstance(exc, errors.ClusterDownError)
                await asyncio.sleep(_SETTLE)
            except (RedisConnectionError, RedisTimeoutError):
                # The node may have failed over: learn the new owner before the next command.
                self._stale = True
                raise
        raise RedisConnectionError(f"no cluster node kept the slot of {key!r} through {_REDIRECTS} redirections")

    async def close(self) -> None:
        pipes, self._pipes = list(self._pipes.values()), {}
        for pipe in pipes:
            await pipe.close()


def _shareable(client: Any, name: str, args: tuple[Any, ...]) -> bool:
    if not client.shareable or name in _UNSHARED:
        return False
    return not (name in _MAY_BLOCK and any(isinstance(a, (str, bytes)) and str(a).upper() == "BLOCK" for a in args))


def _command_name(args: tuple[Any, ...]) -> str:
    return (args[0] if type(args[0]) is str else str(args[0])).upper()


def _wire(name: str, args: tuple[Any, ...]) -> bytes:
    if " " in name:  # "SCRIPT LOAD": the server wants the words as separate arguments
        args = (*args[0].split(), *args[1:])
    return pack(args)


async def _answered(client: Any, name: str, reply: Awaitable[Any], options: dict[str, Any]) -> Any:
    """`reply` as redis-py would return it: the command's response callback applied."""
    try:
        response = await reply
    except errors.ResponseError:
        if EMPTY_RESPONSE in options:
            return options[EMPTY_RESPONSE]
        raise
    if options:
        options.pop(EMPTY_RESPONSE, None)
        options.pop(NEVER_DECODE, None)
        options.pop("keys", None)
    callback = client.response_callbacks.get(name)
    if callback is None:
        return response
    result = callback(response, **options)
    if asyncio.iscoroutine(result):
        return await result
    return result


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
        self.shareable = not self.get_encoder().decode_responses  # type: ignore[no-untyped-call]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = _command_name(args)
        if not _shareable(self, name, args):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await _answered(self, name, self.shared.call(_wire(name, args), retry=name in _IDEMPOTENT), options)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.shared.close()
        await super().aclose(close_connection_pool)


class RoutedCluster(RedisCluster):
    """`redis.asyncio.cluster.RedisCluster` with, on request, automatic pipelining per node
    (`pipes`: the commands with one routable key), and a standalone client per node for what
    needs one connection to the node owning a slot (WATCH/MULTI/EXEC: `node_client`).

    Made with protocol=2 when pipelined, for the reason AutoPipelineRedis gives.
    """

    def __init__(
        self,
        *,
        node_client: Callable[[str, int], aioredis.Redis],
        shared: Callable[[str, int], SharedConnection] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._make_node_client = node_client
        self._node_clients: dict[tuple[str, int], aioredis.Redis] = {}
        self.pipes = None if shared is None else ClusterPipes(self, shared)
        self.shareable = shared is not None and not self.get_encoder().decode_responses
        if self.pipes is not None and str(kwargs.get("protocol")) != "2":
            raise ValueError("a pipelined RoutedCluster must be made with protocol=2, the shared connections'")

    async def initialize(self, *args: Any, **kwargs: Any) -> RoutedCluster:
        try:
            await super().initialize(*args, **kwargs)
        except errors.RedisClusterException as exc:
            # redis-py's "Redis Cluster cannot be connected": no seed node answered, an outage.
            raise RedisConnectionError(str(exc)) from exc
        return self

    def slot_owner(self, keys: Sequence[Any]) -> tuple[str, int]:
        """The node serving the one slot of `keys` (the caller checked they share one)."""
        node = self.get_node_from_key(keys[0])
        assert node is not None
        return node.host, int(node.port)

    def node_client(self, host: str, port: int) -> aioredis.Redis:
        client = self._node_clients.get((host, port))
        if client is None:
            client = self._node_clients[(host, port)] = self._make_node_client(host, port)
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        pipes = self.pipes
        if pipes is not None and "target_nodes" not in options:
            name = _command_name(args)
            key = command_key(args) if _shareable(self, name, args) else None
            if key is not None:
                reply = pipes.route(key, _wire(name, args), retry=name in _IDEMPOTENT)
                return await _answered(self, name, reply, options)
        return await super().execute_command(*args, **options)

    async def aclose(self) -> None:
        if self.pipes is not None:
            await self.pipes.close()
        clients, self._node_clients = list(self._node_clients.values()), {}
        for client in clients:
            await client.aclose()
        await super().aclose()
