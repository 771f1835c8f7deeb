"""The configuration stores under test, one row each; every suite here runs over ROWS.

The `redis` type has two key layouts (`keyLayout`): `dapr`, the default (rows `redis`,
`redis-on-cluster`, `redis-on-sentinel`), and `layotto` (rows `redis-layotto*`)."""

from __future__ import annotations

from dataclasses import dataclass

from layotto.components.configuration.base import ConfigurationFeature
from tests.support.redis_cluster import cluster_metadata, sentinel_metadata
from tests.support.rows import BackendRow


@dataclass(frozen=True)
class ConfigurationTraits:
    #: Several sidecars share the data (a change through one reaches subscribers of another).
    shared: bool = True


Row = BackendRow[ConfigurationTraits]

SCOPES = ConfigurationFeature.SCOPES
LAYOTTO_LAYOUT = {"keyLayout": "layotto", "keyPrefix": "layotto-test-config"}

ROWS: list[Row] = [
    BackendRow(
        block="configuration",
        type="in-memory",
        features=frozenset({ConfigurationFeature.SNAPSHOT, SCOPES}),
        traits=ConfigurationTraits(shared=False),
    ),
    BackendRow(
        block="configuration",
        type="etcd",
        metadata={"address": ["127.0.0.1:2379"], "timeout": "5"},
        requires=("etcd",),
        features=frozenset({SCOPES}),
        traits=ConfigurationTraits(),
    ),
    # Dapr's layout, by default: no keyLayout. A database of its own, so reading every key
    # reads this suite's, and the keyspace channels carry a database number other than 0.
    BackendRow(
        block="configuration",
        type="redis",
        metadata={"redisHost": "127.0.0.1:6379", "redisDB": "3"},
        requires=("redis",),
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        name="redis-on-cluster",
        metadata=cluster_metadata,
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        name="redis-on-sentinel",
        metadata=sentinel_metadata,
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        name="redis-layotto",
        metadata={"address": ["127.0.0.1:6379"], **LAYOTTO_LAYOUT},
        requires=("redis",),
        features=frozenset({SCOPES}),
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        name="redis-layotto-on-cluster",
        metadata=lambda: {**cluster_metadata(), **LAYOTTO_LAYOUT},
        features=frozenset({SCOPES}),
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        name="redis-layotto-on-sentinel",
        metadata=lambda: {**sentinel_metadata(), **LAYOTTO_LAYOUT},
        features=frozenset({SCOPES}),
        traits=ConfigurationTraits(),
    ),
]
