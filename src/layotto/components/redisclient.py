"""One place where Redis connections are made from upstream metadata, for every block.

Connection pooling, reconnects and timeouts live here (in redis-py's asyncio client), so a
component only issues commands and maps `redis.ConnectionError` to BackendUnavailableError.
"""

from __future__ import annotations

import ssl as ssl_module

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.components.base import Metadata
from layotto.components.redis_autopipe import AutoPipelineRedis, SharedConnection, pack
from layotto.errors import BackendUnavailableError, ConfigError

#: Errors that mean "the server is not there right now".
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def split_host(address: str, default_port: int = 6379) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep:
        return address.strip(), default_port
    return host.strip("[]"), int(port)


def connect(metadata: Metadata, *, host_key: str = "redisHost", autopipeline: bool = False) -> aioredis.Redis:
    """A pooled client for `redisHost` (+ redisPassword, redisUsername, redisDB/db, enableTLS,
    maxRetries, maxRetryBackoff, dialTimeout, readTimeout, poolSize).

    `autopipeline`: commands issued concurrently share one connection and one round trip
    (see redis_autopipe); same methods and results, a fraction of the CPU per command.
    """
    address = metadata.get_str(host_key)
    if not address:
        raise ConfigError("redis store error: missing host address", f"{metadata.where}.metadata.{host_key}")
    host, port = split_host(address)
    retries = metadata.get_int("maxRetries", 3)
    backoff_cap = metadata.get_duration("maxRetryBackoff", 0.512)
    db = metadata.get_int("redisDB", metadata.get_int("db", 0))
    ssl = metadata.get_bool("enableTLS", False)
    # A blocking pool: when every connection is busy a command waits (up to dialTimeout) for
    # one instead of failing with "Too many connections" under a burst.
    pool = aioredis.BlockingConnectionPool(
        host=host,
        port=port,
        db=db,
        username=metadata.get_str("redisUsername") or None,
        password=metadata.get_str("redisPassword") or None,
        connection_class=SSLConnection if ssl else Connection,
        socket_connect_timeout=metadata.get_duration("dialTimeout", 5.0),
        socket_timeout=metadata.get_duration("readTimeout", 5.0),
        # Retry a command only when its connection failed, never after a read timed out: the
        # command may have run, and retrying a hung server multiplies the wait (4 x readTimeout).
        retry=Retry(ExponentialBackoff(cap=backoff_cap, base=0.008), retries, supported_errors=(RedisConnectionError,)),
        retry_on_error=[],
        max_connections=metadata.get_int("poolSize", 0) or 64,
        timeout=metadata.get_duration("dialTimeout", 5.0),
        health_check_interval=30,
    )
    client_class = AutoPipelineRedis if autopipeline else aioredis.Redis
    return client_class.from_pool(pool)


def unavailable(address: str, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(f"redis at {address} is unavailable: {exc}")


# ---- the raw pipelined connection, for hot paths that parse replies themselves ----


def encode_command(*args: bytes | str | int) -> bytes:
    return pack(args, SharedConnection.encode_other)


class MultiplexedRedis(SharedConnection):
    """redis_autopipe's shared connection under the name the state store uses: one
    connection, concurrent commands batched per loop iteration, replies resolved in order."""

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
        super().__init__(
            host,
            port,
            db=db,
            username=username,
            password=password,
            ssl_context=ssl_module.create_default_context() if ssl else None,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    async def execute_raw(self, command: bytes, *, retry: bool = False) -> object:
        """Send an encoded command; `retry` once on a fresh connection when the old one died
        (only for idempotent commands: a lost reply may mean the command did run)."""
        return await self.call(command, retry=retry)


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
