"""The name resolvers under test, one row each (tests/support/rows.BackendRow)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from layotto.components.nameresolution.base import NameResolutionFeature
from tests.support.redis_cluster import (
    cluster_metadata,
    dead_cluster_metadata,
    dead_sentinel_metadata,
    sentinel_metadata,
)
from tests.support.rows import BackendRow
from tests.support.sidecar import free_port


@dataclass(frozen=True)
class NameResolutionTraits:
    #: Metadata pointing at a registry that is not there (resolvers without a backend: None).
    dead_metadata: Callable[[], dict[str, Any]] | None = None


#: A row's metadata is a function of (table, namespace): a resolver without a registry is given
#: `table` (app id -> address); one with a registry gets `namespace` to keep tests apart, and
#: learns the table by register().
Row = BackendRow[NameResolutionTraits]

ROWS: list[Row] = [
    BackendRow(
        block="nameresolution",
        type="static",
        metadata=lambda table, ns: {"apps": table},
        traits=NameResolutionTraits(),
    ),
    BackendRow(
        block="nameresolution",
        type="redis",
        metadata=lambda table, ns: {
            "redisHost": "127.0.0.1:6379",
            "keyPrefix": f"layotto-test-nr:{ns}:",
            "ttl": "1s",
            "heartbeatInterval": "200ms",
            "cacheTTL": "100ms",
        },
        requires=("redis",),
        features=frozenset({NameResolutionFeature.REGISTRY}),
        traits=NameResolutionTraits(
            dead_metadata=lambda: {"redisHost": f"127.0.0.1:{free_port()}", "maxRetries": "0", "dialTimeout": "1s"}
        ),
    ),
    BackendRow(
        block="nameresolution",
        type="redis",
        name="redis-on-cluster",
        metadata=lambda table, ns: {
            **cluster_metadata(),
            "keyPrefix": f"layotto-test-nr:{ns}:",
            "ttl": "1s",
            "heartbeatInterval": "200ms",
            "cacheTTL": "100ms",
        },
        features=frozenset({NameResolutionFeature.REGISTRY}),
        traits=NameResolutionTraits(dead_metadata=dead_cluster_metadata),
    ),
    BackendRow(
        block="nameresolution",
        type="redis",
        name="redis-on-sentinel",
        metadata=lambda table, ns: {
            **sentinel_metadata(),
            "keyPrefix": f"layotto-test-nr:{ns}:",
            "ttl": "1s",
            "heartbeatInterval": "200ms",
            "cacheTTL": "100ms",
        },
        features=frozenset({NameResolutionFeature.REGISTRY}),
        traits=NameResolutionTraits(dead_metadata=dead_sentinel_metadata),
    ),
]
REGISTRIES = [b for b in ROWS if NameResolutionFeature.REGISTRY in b.features]
