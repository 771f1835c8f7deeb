"""RedisSettings: the one reading of the Redis metadata keys, for every block's Redis component,
and the clients made from it."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from layotto.components._drivers.redis import RedisSettings, connect, shared_connection
from layotto.components.base import Metadata
from layotto.errors import ConfigError

WHERE = "state.cache"


def settings(**metadata: str) -> RedisSettings:
    return RedisSettings.from_metadata(Metadata(metadata, where=WHERE))


def test_defaults() -> None:
    assert settings(redisHost="localhost") == RedisSettings(
        address="localhost",
        host="localhost",
        port=6379,
        db=0,
        username=None,
        password=None,
        tls=False,
        max_retries=3,
        max_retry_backoff=0.512,
        dial_timeout=5.0,
        read_timeout=5.0,
        pool_size=64,
    )


def test_every_key() -> None:
    got = settings(
        redisHost=" [::1]:6390 ",
        redisUsername="app",
        redisPassword="secret",
        redisDB="2",
        db="3",
        enableTLS="true",
        maxRetries="0",
        maxRetryBackoff="100ms",
        dialTimeout="2s",
        readTimeout="1.5",
        poolSize="8",
    )
    assert (got.address, got.host, got.port) == (" [::1]:6390 ", "::1", 6390)
    assert (got.db, got.username, got.password, got.tls) == (2, "app", "secret", True)  # redisDB wins over db
    assert (got.max_retries, got.max_retry_backoff, got.dial_timeout, got.read_timeout) == (0, 0.1, 2.0, 1.5)
    assert got.pool_size == 8
    assert got.ssl_context() is not None


def test_db_alone_keys_in_any_case_and_pool_size_zero() -> None:
    assert settings(redisHost="h:1", db="4", poolSize="0").db == 4
    assert settings(redisHost="h:1", db="4", poolSize="0").pool_size == 64
    assert settings(redishost="h:1", REDISDB="5").db == 5


def test_an_address_of_the_components_own_stands_for_redis_host() -> None:
    got = RedisSettings.from_metadata(Metadata({"redisHosts": "a:1,b:2", "redisDB": "1"}), address="b:2")
    assert (got.address, got.host, got.port, got.db) == ("b:2", "b", 2, 1)


@pytest.mark.parametrize(
    ("metadata", "path", "message"),
    [
        ({}, "redisHost", "redis store error: missing host address"),
        ({"redisHost": ""}, "redisHost", "redis store error: missing host address"),
        ({"redisHost": "h", "maxRetries": "x", "db": "y"}, "maxRetries", "'maxRetries' must be an integer, got 'x'"),
        ({"redisHost": "h", "redisDB": "1", "db": "y"}, "db", "'db' must be an integer, got 'y'"),
        ({"redisHost": "h", "enableTLS": "maybe"}, "enableTLS", "'enableTLS' must be true or false, got 'maybe'"),
        ({"redisHost": "h", "dialTimeout": "zz", "poolSize": "p"}, "dialTimeout", "'dialTimeout' is not a duration"),
        ({"redisHost": "h", "poolSize": "p"}, "poolSize", "'poolSize' must be an integer, got 'p'"),
    ],
)
def test_bad_metadata_names_the_key(metadata: dict[str, str], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RedisSettings.from_metadata(Metadata(metadata, where=WHERE))
    assert info.value.path == f"{WHERE}.metadata.{path}"
    assert message in str(info.value)


async def test_the_clients_follow_the_settings() -> None:
    got = settings(redisHost="h:7", redisDB="2", dialTimeout="2s", readTimeout="3s", poolSize="8", maxRetries="1")
    client = connect(got)
    try:
        pool = client.connection_pool
        assert isinstance(pool, aioredis.BlockingConnectionPool)
        params = pool.connection_kwargs
        assert (params["host"], params["port"], params["db"]) == ("h", 7, 2)
        assert (params["socket_connect_timeout"], params["socket_timeout"]) == (2.0, 3.0)
        assert (pool.max_connections, pool.timeout) == (8, 2.0)
        assert params["retry"].get_retries() == 1
    finally:
        await client.aclose()
    assert shared_connection(got).address == "h:7"
