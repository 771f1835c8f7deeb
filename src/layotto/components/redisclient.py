"""One place where Redis connections are made from upstream metadata, for every block.

Connection pooling, reconnects and timeouts live here (in redis-py's asyncio client), so a
component only issues commands and maps `redis.ConnectionError` to BackendUnavailableError.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
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
