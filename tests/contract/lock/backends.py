"""The lock backends under test, one row each (tests/support/rows.BackendRow); suites are
parametrised over ROWS.

Adding a backend = one row. `redis_cluster` runs Redlock over three extra redis-server
processes started here (on free loopback ports, no persistence) and stopped at exit; the
`redis-on-cluster` row is the one-server lock on a Redis Cluster (tests/support/redis_cluster).
"""

from __future__ import annotations

import atexit
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from layotto.components.lock.base import LockFeature
from tests.support.redis_cluster import cluster_metadata
from tests.support.rows import BackendRow, by_id
from tests.support.services import MYSQL, POSTGRES_DSN, require_binary
from tests.support.sidecar import free_port

RUN = uuid.uuid4().hex[:10]
APP_ID = "lock-test-app"
#: Shared test tables: tests isolate by unique resource ids, so one table per backend is enough.
TABLE = "layotto_lock_test"
_SQLITE_PATH = f"{tempfile.gettempdir()}/layotto-lock-test-{RUN}.db"


class RedisNodes:
    """Independent redis-server processes for Redlock, owned (and stopped) by this test run."""

    def __init__(self, count: int = 3) -> None:
        self.count = count
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> RedisNodes:
        if self._procs:
            return self
        self._binary = require_binary("redis-server")
        for _ in range(self.count):
            self.ports.append(free_port())
            self._procs.append(self._spawn(self.ports[-1]))
        atexit.register(self.stop)
        for port in self.ports:
            self._wait_up(port)
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        args = [self._binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def _wait_up(port: int) -> None:
        deadline = time.monotonic() + 10
        client = redis.Redis(port=port)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {port} did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop_one(self, index: int) -> None:
        """Stop node `index` (an outage); `restart` brings it back, empty, on the same port."""
        proc = self._procs[index]
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self, index: int) -> None:
        self._procs[index] = self._spawn(self.ports[index])
        self._wait_up(self.ports[index])

    @property
    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(5)
        self._procs.clear()


REDIS_NODES = RedisNodes()


def _mysql_dsn() -> str:
    return f"{MYSQL['user']}:{MYSQL['password']}@tcp({MYSQL['host']}:{MYSQL['port']})/{MYSQL['database']}"


@dataclass(frozen=True)
class LockTraits:
    #: Shared by several sidecars (safe across processes on different hosts).
    distributed: bool = True
    #: Shortest real expiry in seconds (etcd rounds short lease TTLs up to 2 s).
    min_ttl: float = 1.0


Row = BackendRow[LockTraits]
KEEP_ALIVE = frozenset({LockFeature.KEEP_ALIVE})


def _row(
    type_name: str, metadata: Callable[[], dict[str, Any]], requires: tuple[str, ...], name: str = "", **traits: Any
) -> Row:
    return BackendRow(
        block="lock",
        type=type_name,
        name=name,
        metadata=metadata,
        requires=requires,
        features=KEEP_ALIVE,
        traits=LockTraits(**traits),
    )


ROWS: list[Row] = [
    _row("in-memory", dict, (), distributed=False),
    _row("sqlite", lambda: {"databasePath": _SQLITE_PATH, "tableName": TABLE}, (), distributed=False),
    _row("redis", lambda: {"redisHost": "127.0.0.1:6379"}, ("redis",)),
    _row("redis_cluster", lambda: {"redisHosts": REDIS_NODES.start().hosts, "concurrency": "3"}, ("redis",)),
    _row("redis", cluster_metadata, (), name="redis-on-cluster"),
    _row(
        "etcd",
        lambda: {"endpoints": "127.0.0.1:2379", "keyPrefixPath": f"/layotto-test/lock-{RUN}/"},
        ("etcd",),
        min_ttl=2.0,
    ),
    _row("zookeeper", lambda: {"zookeeperHosts": "127.0.0.1:2181"}, ("zookeeper",)),
    _row("postgresql", lambda: {"connectionString": POSTGRES_DSN, "tableName": TABLE}, ("postgresql",)),
    _row("mysql", lambda: {"connectionString": _mysql_dsn(), "tableName": TABLE}, ("mysql",)),
]

DISTRIBUTED = [b for b in ROWS if b.traits.distributed]
BY_TYPE = by_id(ROWS)


def lock_config(backend: Row, store: str = "lock_store", **extra_metadata: str) -> dict[str, Any]:
    """A grpc_config with one lock store of `backend` and a fixed app id."""
    backend.require()
    return {"app": {"app_id": APP_ID}, "lock": {store: backend.entry(**extra_metadata)}}


def resource() -> str:
    return f"res-{RUN}-{uuid.uuid4().hex[:12]}"
