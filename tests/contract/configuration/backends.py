"""The configuration stores under test, one row each; every suite here runs over ROWS."""

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

ROWS: list[Row] = [
    BackendRow(
        block="configuration",
        type="in-memory",
        features=frozenset({ConfigurationFeature.SNAPSHOT}),
        traits=ConfigurationTraits(shared=False),
    ),
    BackendRow(
        block="configuration",
        type="etcd",
        metadata={"address": ["127.0.0.1:2379"], "timeout": "5"},
        requires=("etcd",),
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        metadata={"address": ["127.0.0.1:6379"], "keyPrefix": "layotto-test-config"},
        requires=("redis",),
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        name="redis-on-cluster",
        metadata=lambda: {**cluster_metadata(), "keyPrefix": "layotto-test-config"},
        traits=ConfigurationTraits(),
    ),
    BackendRow(
        block="configuration",
        type="redis",
        name="redis-on-sentinel",
        metadata=lambda: {**sentinel_metadata(), "keyPrefix": "layotto-test-config"},
        traits=ConfigurationTraits(),
    ),
]
