"""The sequencer backends under test: one row each. Suites are parametrised over this table."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.services import MYSQL, POSTGRES_DSN, require

_RUN = uuid.uuid4().hex[:10]
#: Shared test tables: tests isolate by unique keys, so one table per backend is enough.
_TABLE = "layotto_seq_test"
_SQLITE_PATH = f"{tempfile.gettempdir()}/layotto-seq-test-{_RUN}.db"


@dataclass(frozen=True)
class Backend:
    type: str
    metadata: Callable[[], dict[str, Any]]
    #: Backing service that must be reachable (None: none needed).
    service: str | None
    #: A counter: fresh keys start at 1, STRONG ids are consecutive without a cache.
    counter: bool = True
    #: Shared by several sidecars (ids unique across them).
    distributed: bool = True
    #: Counters survive a sidecar restart.
    persistent: bool = True
    #: Segment cache used for WEAK ids when segmentCacheEnable is not set.
    cache_default: bool = False

    def require(self) -> None:
        if self.service:
            require(self.service)


def _mysql_dsn() -> str:
    return f"{MYSQL['user']}:{MYSQL['password']}@tcp({MYSQL['host']}:{MYSQL['port']})/{MYSQL['database']}"


BACKENDS: list[Backend] = [
    Backend("in-memory", lambda: {}, None, distributed=False, persistent=False, cache_default=True),
    Backend("sqlite", lambda: {"databasePath": _SQLITE_PATH, "tableName": _TABLE}, None, distributed=False),
    Backend("redis", lambda: {"redisHost": "127.0.0.1:6379"}, "redis", cache_default=True),
    Backend("postgresql", lambda: {"connectionString": POSTGRES_DSN, "tableName": _TABLE}, "postgresql"),
    Backend("mysql", lambda: {"connectionString": _mysql_dsn(), "tableName": _TABLE}, "mysql"),
    Backend("etcd", lambda: {"endpoints": "127.0.0.1:2379", "keyPrefixPath": f"/layotto-test/seq-{_RUN}/"}, "etcd"),
    Backend(
        "zookeeper",
        lambda: {"zookeeperHosts": "127.0.0.1:2181", "keyPrefixPath": f"/layotto-test-seq-{_RUN}"},
        "zookeeper",
    ),
    Backend(
        "snowflake",
        lambda: {
            "mysqlHost": f"{MYSQL['host']}:{MYSQL['port']}",
            "databaseName": MYSQL["database"],
            "userName": MYSQL["user"],
            "password": MYSQL["password"],
            "tableName": "layotto_seq_test_snowflake",
        },
        "mysql",
        counter=False,
    ),
]

BY_TYPE = {b.type: b for b in BACKENDS}


def params(backends: list[Backend]) -> list[Any]:
    return [pytest.param(b, id=b.type) for b in backends]


def sequencer_config(
    backend: Backend,
    *,
    name: str = "seq",
    app_id: str = "seq-app",
    extra_metadata: dict[str, Any] | None = None,
    bigger_than: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A grpc_config with one sequencer of this backend."""
    entry: dict[str, Any] = {"type": backend.type, "metadata": {**backend.metadata(), **(extra_metadata or {})}}
    if bigger_than:
        entry["biggerThan"] = bigger_than
    return {"app": {"app_id": app_id}, "sequencer": {name: entry}}
