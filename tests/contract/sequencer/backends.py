"""The sequencer backends under test: one row each (tests/support/rows.BackendRow). Suites are
parametrised over ROWS."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from layotto.components.sequencer.base import SequencerFeature
from tests.support.redis_cluster import cluster_metadata, sentinel_metadata
from tests.support.rows import BackendRow, by_id
from tests.support.services import MYSQL, POSTGRES_DSN

_RUN = uuid.uuid4().hex[:10]
#: Shared test tables: tests isolate by unique keys, so one table per backend is enough.
_TABLE = "layotto_seq_test"
_SQLITE_PATH = f"{tempfile.gettempdir()}/layotto-seq-test-{_RUN}.db"


@dataclass(frozen=True)
class SequencerTraits:
    #: Shared by several sidecars (ids unique across them).
    distributed: bool = True
    #: Counters survive a sidecar restart.
    persistent: bool = True
    #: Segment cache used for WEAK ids when segmentCacheEnable is not set.
    cache_default: bool = False


Row = BackendRow[SequencerTraits]
#: A counter per key (RangeSequencer): fresh keys start at 1, STRONG ids are consecutive without a cache.
COUNTER = frozenset({SequencerFeature.SEGMENT})


def _mysql_dsn() -> str:
    return f"{MYSQL['user']}:{MYSQL['password']}@tcp({MYSQL['host']}:{MYSQL['port']})/{MYSQL['database']}"


def _row(
    type_name: str,
    metadata: Callable[[], dict[str, Any]],
    requires: tuple[str, ...],
    features: frozenset[SequencerFeature] = COUNTER,
    name: str = "",
    **traits: Any,
) -> Row:
    return BackendRow(
        block="sequencer",
        type=type_name,
        name=name,
        metadata=metadata,
        requires=requires,
        features=features,
        traits=SequencerTraits(**traits),
    )


ROWS: list[Row] = [
    _row("in-memory", dict, (), distributed=False, persistent=False, cache_default=True),
    _row("sqlite", lambda: {"databasePath": _SQLITE_PATH, "tableName": _TABLE}, (), distributed=False),
    _row("redis", lambda: {"redisHost": "127.0.0.1:6379"}, ("redis",), cache_default=True),
    _row("redis", cluster_metadata, (), name="redis-on-cluster", cache_default=True),
    _row("redis", sentinel_metadata, (), name="redis-on-sentinel", cache_default=True),
    _row("postgresql", lambda: {"connectionString": POSTGRES_DSN, "tableName": _TABLE}, ("postgresql",)),
    _row("mysql", lambda: {"connectionString": _mysql_dsn(), "tableName": _TABLE}, ("mysql",)),
    _row("etcd", lambda: {"endpoints": "127.0.0.1:2379", "keyPrefixPath": f"/layotto-test/seq-{_RUN}/"}, ("etcd",)),
    _row(
        "zookeeper",
        lambda: {"zookeeperHosts": "127.0.0.1:2181", "keyPrefixPath": f"/layotto-test-seq-{_RUN}"},
        ("zookeeper",),
    ),
    _row(
        "snowflake",
        lambda: {
            "mysqlHost": f"{MYSQL['host']}:{MYSQL['port']}",
            "databaseName": MYSQL["database"],
            "userName": MYSQL["user"],
            "password": MYSQL["password"],
            "tableName": "layotto_seq_test_snowflake",
        },
        ("mysql",),
        features=frozenset(),
    ),
]

BY_TYPE = by_id(ROWS)


def sequencer_config(
    backend: Row,
    *,
    name: str = "seq",
    app_id: str = "seq-app",
    extra_metadata: dict[str, Any] | None = None,
    bigger_than: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A grpc_config with one sequencer of this backend."""
    entry = backend.entry(**(extra_metadata or {}))
    if bigger_than:
        entry["biggerThan"] = bigger_than
    return {"app": {"app_id": app_id}, "sequencer": {name: entry}}
