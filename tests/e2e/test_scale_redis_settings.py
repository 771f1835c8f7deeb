"""The metadata that picks a Redis deployment (Dapr's names: redisType, failover,
sentinelMasterName, ...) and what the driver makes of it, without any server: the client kind,
the routing key of a command on a cluster, hash tags, and the refusals with the key named."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool

from layotto.components._drivers import redis as redis_driver
from layotto.components._drivers.redis_autopipe import ClusterPipes, SharedConnection, command_key
from layotto.components.base import Metadata
from layotto.errors import ConfigError

WHERE = "state.cache"


def settings(**metadata: str) -> redis_driver.RedisSettings:
    return redis_driver.RedisSettings.from_metadata(Metadata(metadata, where=WHERE))


def test_a_cluster_takes_its_seed_nodes_from_redis_host() -> None:
    got = settings(redisHost="a:7000, b:7001,c", redisType="Cluster", redisUsername="u", redisPassword="p")
    assert (got.cluster, got.failover, got.nodes) == (True, False, [("a", 7000), ("b", 7001), ("c", 6379)])
    assert (got.host, got.port, got.username, got.password) == ("a", 7000, "u", "p")


def test_sentinel_takes_the_sentinels_and_their_own_credentials() -> None:
    got = settings(
        redisHost="s1:26379,s2:26380",
        failover="true",
        sentinelMasterName="mymaster",
        sentinelUsername="su",
        sentinelPassword="sp",
        redisPassword="p",
    )
    assert (got.failover, got.cluster, got.sentinel_master_name) == (True, False, "mymaster")
    assert (got.sentinel_username, got.sentinel_password, got.password) == ("su", "sp", "p")
    assert got.nodes == [("s1", 26379), ("s2", 26380)]


def test_upstream_retry_names_win_over_the_legacy_ones() -> None:
    got = settings(redisHost="h", redisMaxRetries="5", maxRetries="1", redisMaxRetryInterval="2s")
    assert (got.max_retries, got.max_retry_backoff) == (5, 2.0)
    assert settings(redisHost="h", redisMaxRetries="-1").max_retries == 0  # upstream: -1 disables


def test_insecure_tls_skips_the_certificate_check() -> None:
    context = settings(redisHost="h", enableTLS="true", insecureSkipTLSVerify="true").ssl_context()
    assert context is not None and not context.check_hostname


@pytest.mark.parametrize(
    ("metadata", "path", "message"),
    [
        ({"redisHost": "h", "redisType": "shard"}, "redisType", "redisType must be 'node' or 'cluster'"),
        ({"redisHost": "h", "failover": "true"}, "", "failover needs sentinelMasterName"),
        (
            {"redisHost": "h", "failover": "true", "sentinelMasterName": "m", "redisType": "cluster"},
            "failover",
            "exclude each other",
        ),
        ({"redisHost": "a,b", "redisType": "cluster", "redisDB": "1"}, "redisDB", "only database 0"),
        ({"redisHost": "a:1,b:2"}, "redisHost", "redisHost lists 2 servers"),
        ({"redisHost": "h", "clientCert": "PEM"}, "clientCert", "set enableTLS to true"),
        ({"redisHost": " , "}, "redisHost", "missing host address"),
    ],
)
def test_bad_deployment_metadata_names_the_key(metadata: dict[str, str], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        redis_driver.RedisSettings.from_metadata(Metadata(metadata, where=WHERE))
    assert info.value.path == f"{WHERE}.metadata" + (f".{path}" if path else "")
    assert message in str(info.value)


async def test_each_deployment_gets_its_client() -> None:
    cluster = redis_driver.connect(settings(redisHost="a:1,b:2", redisType="cluster"), autopipeline=True)
    sentinel = redis_driver.connect(settings(redisHost="s:1", failover="true", sentinelMasterName="m"))
    node = redis_driver.connect(settings(redisHost="h:1"))
    try:
        assert isinstance(cluster, redis_driver.RoutedCluster) and cluster.pipes is not None
        assert [(n.host, n.port) for n in cluster.startup_nodes] == [("a", 1), ("b", 2)]
        assert isinstance(sentinel.connection_pool, SentinelConnectionPool)
        assert isinstance(sentinel.connection_pool, aioredis.BlockingConnectionPool)
        assert sentinel.connection_pool.service_name == "m"
        assert not isinstance(node, redis_driver.RoutedCluster)
        assert isinstance(redis_driver.pipelined(cluster, settings(redisHost="a:1", redisType="cluster")), ClusterPipes)
        assert isinstance(redis_driver.pipelined(sentinel, settings(redisHost="s:1")), SharedConnection)
    finally:
        for client in (cluster, sentinel, node):
            await client.aclose()


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (("HGETALL", "k"), "k"),
        ((b"EVALSHA", "sha", 1, "k", "arg"), "k"),
        (("EVAL", "script", 2, "{t}a", "{t}b", "arg"), "{t}a"),
        (("EVAL", "script", 2, "a", "b"), None),  # two slots: redis-py's path refuses it
        (("EVAL", "script", 0), None),
        (("XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "BLOCK", 1000, "STREAMS", "s", ">"), "s"),
        (("XGROUP CREATE", "s", "g", "0", "MKSTREAM"), "s"),
        (("DEL", "k"), "k"),
        (("DEL", "a", "b"), None),
        (("PING",), None),
        (("SCRIPT LOAD", "return 1"), None),
    ],
)
def test_the_key_a_cluster_routes_a_command_by(command: tuple[object, ...], key: object) -> None:
    assert command_key(command) == key


def test_hash_tags_only_on_a_cluster() -> None:
    cluster, node = settings(redisHost="a,b", redisType="cluster"), settings(redisHost="h")
    assert redis_driver.hash_tagged(cluster, "queue") == "{queue}"
    assert redis_driver.hash_tagged(cluster, "{mine}:queue") == "{mine}:queue"
    assert redis_driver.hash_tagged(node, "queue") == "queue"
