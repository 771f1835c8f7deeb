"""The lock backends under test, one row each; suites are parametrised over this table.

Adding a backend = one row. `redis_cluster` runs Redlock over three extra redis-server
processes started here (on free loopback ports, no persistence) and stopped at exit.
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

import pytest
import redis

from tests.support.services import MYSQL, POSTGRES_DSN, require, require_binary
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
class Backend:
    type: str
    metadata: Callable[[], dict[str, Any]]
    #: Backing service that must be reachable (None: none needed).
    service: str | None
    #: Shared by several sidecars (safe across processes on different hosts).
    distributed: bool = True
    #: Shortest real expiry in seconds (etcd rounds short lease TTLs up to 2 s).
    min_ttl: float = 1.0

    def require(self) -> None:
        if self.service:
            require(self.service)


BACKENDS: list[Backend] = [
    Backend("in-memory", lambda: {}, None, distributed=False),
    Backend("sqlite", lambda: {"databasePath": _SQLITE_PATH, "tableName": TABLE}, None, distributed=False),
    Backend("redis", lambda: {"redisHost": "127.0.0.1:6379"}, "redis"),
    Backend("redis_cluster", lambda: {"redisHosts": REDIS_NODES.start().hosts, "concurrency": "3"}, "redis"),
    Backend(
        "etcd",
        lambda: {"endpoints": "127.0.0.1:2379", "keyPrefixPath": f"/layotto-test/lock-{RUN}/"},
        "etcd",
        min_ttl=2.0,
    ),
    Backend("zookeeper", lambda: {"zookeeperHosts": "127.0.0.1:2181"}, "zookeeper"),
    Backend("postgresql", lambda: {"connectionString": POSTGRES_DSN, "tableName": TABLE}, "postgresql"),
    Backend("mysql", lambda: {"connectionString": _mysql_dsn(), "tableName": TABLE}, "mysql"),
]

DISTRIBUTED = [b for b in BACKENDS if b.distributed]
BY_TYPE = {b.type: b for b in BACKENDS}


def params(backends: list[Backend]) -> list[Any]:
    return [pytest.param(b, id=b.type) for b in backends]


def lock_config(backend: Backend, store: str = "lock_store", **extra_metadata: str) -> dict[str, Any]:
    """A grpc_config with one lock store of `backend` and a fixed app id."""
    backend.require()
    return {
        "app": {"app_id": APP_ID},
        "lock": {store: {"type": backend.type, "metadata": {**backend.metadata(), **extra_metadata}}},
    }


def resource() -> str:
    return f"res-{RUN}-{uuid.uuid4().hex[:12]}"
