"""Redis through redis-py, for the Redis component of every block: one settings object read from
the component metadata, the clients made from it, and what counts as an outage.

Connection pooling, reconnects and timeouts live in the clients made here, so a component only
issues commands and maps UNAVAILABLE to BackendUnavailableError (see `unavailable`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Re-exported: the components use these types through this module only.
from layotto.components._drivers.redis_autopipe import AutoPipelineRedis as AutoPipelineRedis
from layotto.components._drivers.redis_autopipe import SharedConnection as SharedConnection
from layotto.components._drivers.redis_autopipe import pack
from layotto.components.base import Metadata
from layotto.errors import BackendUnavailableError, ConfigError

#: Errors that mean "the server is not there right now".
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def split_host(address: str, default_port: int = 6379) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep:
        return address.strip(), default_port
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where and how to reach one Redis server, from the metadata keys of upstream's Redis
    components: redisHost, redisUsername, redisPassword, redisDB (or db), enableTLS, maxRetries,
    maxRetryBackoff, dialTimeout, readTimeout, poolSize."""

    #: `redisHost` as configured, for messages.
    address: str
    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: Retries of a command whose connection failed (never of one whose reply timed out).
    max_retries: int = 3
    max_retry_backoff: float = 0.512
    dial_timeout: float = 5.0
    read_timeout: float = 5.0
    pool_size: int = 64

    @classmethod
    def from_metadata(cls, metadata: Metadata, *, address: str | None = None) -> RedisSettings:
        """The settings in `metadata`; `address` stands for its `redisHost` when given (a
        component with a host list of its own, or another key for it)."""
        if address is None:
            address = metadata.get_str("redisHost")
        if not address:
            raise ConfigError("redis store error: missing host address", f"{metadata.where}.metadata.redisHost")
        host, port = split_host(address)
        # Read in a fixed order: of several bad keys, the first one here is the one reported.
        return cls(
            address=address,
            host=host,
            port=port,
            max_retries=metadata.get_int("maxRetries", 3),
            max_retry_backoff=metadata.get_duration("maxRetryBackoff", 0.512),
            db=metadata.get_int("redisDB", metadata.get_int("db", 0)),
            tls=metadata.get_bool("enableTLS", False),
            username=metadata.get_str("redisUsername") or None,
            password=metadata.get_str("redisPassword") or None,
            dial_timeout=metadata.get_duration("dialTimeout", 5.0),
            read_timeout=metadata.get_duration("readTimeout", 5.0),
            pool_size=metadata.get_int("poolSize", 0) or 64,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        # The checks redis-py's SSLConnection makes by default: a trusted certificate for the host.
        return ssl.create_default_context() if self.tls else None


def connect(settings: RedisSettings, *, autopipeline: bool = False) -> aioredis.Redis:
    """A pooled client (it connects on first use).

    `autopipeline`: commands issued concurrently share one connection and one round trip
    (see redis_autopipe); same methods and results, a fraction of the CPU per command.
    """
    # A blocking pool: when every connection is busy a command waits (up to dialTimeout) for
    # one instead of failing with "Too many connections" under a burst.
    pool = aioredis.BlockingConnectionPool(
        host=settings.host,
        port=settings.port,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        connection_class=aioredis.SSLConnection if settings.tls else aioredis.Connection,
        socket_connect_timeout=settings.dial_timeout,
        socket_timeout=settings.read_timeout,
        # Retry a command only when its connection failed, never after a read timed out: the
        # command may have run, and retrying a hung server multiplies the wait (4 x readTimeout).
        retry=Retry(
            ExponentialBackoff(cap=settings.max_retry_backoff, base=0.008),
            settings.max_retries,
            supported_errors=(RedisConnectionError,),
        ),
        retry_on_error=[],
        max_connections=settings.pool_size,
        timeout=settings.dial_timeout,
        health_check_interval=30,
        # The shared connection of an autopipelined client speaks RESP2; its pool must too (None:
        # redis-py's default).
        protocol=2 if autopipeline else None,
    )
    if autopipeline:
        return AutoPipelineRedis(pool, shared_connection(settings))
    return aioredis.Redis.from_pool(pool)


def shared_connection(settings: RedisSettings) -> SharedConnection:
    """The raw pipelined connection (opened on first use), for hot paths that send encoded
    commands (`encode_command`) and read RESP2 replies themselves."""
    return SharedConnection(
        settings.host,
        settings.port,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        ssl_context=settings.ssl_context(),
        connect_timeout=settings.dial_timeout,
        read_timeout=settings.read_timeout,
    )


def encode_command(*args: bytes | str | int) -> bytes:
    return pack(args)


def unavailable(address: str, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(f"redis at {address} is unavailable: {exc}")


async def ping(client: Any, address: str) -> None:
    """PING `client` (a Redis or RedisCluster); an unreachable server is BackendUnavailableError."""
    try:
        await client.ping()
    except UNAVAILABLE as exc:
        raise unavailable(address, exc) from exc
