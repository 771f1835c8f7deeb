"""The state backends under test, one row each (tests/support/rows.BackendRow). Every suite
here is parametrised over ROWS, so adding a backend is one row and no test code.

Each backend gets its own table (or database file) named after this run and removed when
the run ends; tests also isolate themselves with unique keys.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg

from layotto.components.state.base import StateFeature
from tests.contract.pluggable_process import state_registry
from tests.support.redis_cluster import cluster_metadata, sentinel_metadata
from tests.support.rows import BackendRow
from tests.support.services import MYSQL, POSTGRES_DSN

RUN = uuid.uuid4().hex[:10]
TABLE = f"layotto_state_test_{RUN}"
APP_ID = "state-conformance-app"
_TMP = Path(tempfile.gettempdir()) / f"layotto-state-test-{RUN}"


#: The table (or database file) of the block-interface suite, apart from the gRPC suites' one:
#: each suite drops its own when done, whatever order pytest runs them in.
INTERFACE_TABLE = f"{TABLE}_i"


async def _drop_pg_table(table: str = TABLE) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await conn.close()


async def _drop_mysql_table(table: str = TABLE) -> None:
    conn = await aiomysql.connect(
        host=MYSQL["host"], port=MYSQL["port"], user=MYSQL["user"], password=MYSQL["password"], db=MYSQL["database"]
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS `{table}`")
    finally:
        conn.close()


def interface_storage(row: BackendRow[None]) -> dict[str, str]:
    """Metadata that puts a row's data in the block-interface suite's own table or file."""
    metadata = row.meta()
    if "tableName" in metadata:
        return {"tableName": INTERFACE_TABLE}
    if "databasePath" in metadata:
        return {"databasePath": str(_TMP / "interface.db")}
    return {}


FEATURES = frozenset({StateFeature.ETAG, StateFeature.TRANSACTIONAL, StateFeature.TTL})

Row = BackendRow[None]

ROWS: list[Row] = [
    BackendRow(block="state", type="in-memory", features=FEATURES, traits=None),
    BackendRow(
        block="state",
        type="sqlite",
        metadata={"databasePath": str(_TMP / "state.db")},
        features=FEATURES,
        traits=None,
    ),
    BackendRow(
        block="state",
        type="redis",
        metadata={"redisHost": "127.0.0.1:6379"},
        requires=("redis",),
        features=FEATURES,
        traits=None,
    ),
    BackendRow(
        block="state",
        type="redis",
        name="redis-on-sentinel",
        metadata=sentinel_metadata,
        features=FEATURES,
        traits=None,
    ),
    BackendRow(
        block="state",
        type="postgresql",
        metadata={"connectionString": "host=127.0.0.1 port=5432 user=postgres dbname=test", "tableName": TABLE},
        requires=("postgresql",),
        features=FEATURES,
        traits=None,
        cleanup=_drop_pg_table,
    ),
    BackendRow(
        block="state",
        type="mysql",
        metadata={
            "connectionString": f"{MYSQL['user']}:{MYSQL['password']}@tcp({MYSQL['host']}:{MYSQL['port']})/",
            "schemaName": str(MYSQL["database"]),
            "tableName": TABLE,
        },
        requires=("mysql",),
        features=FEATURES,
        traits=None,
        cleanup=_drop_mysql_table,
    ),
    # Upstream's powers: memcached has TTL only, ZooKeeper etags only. scripts/services starts
    # both servers with room for the suites' 3 MiB values; the ZooKeeper client is told so too.
    BackendRow(
        block="state",
        type="memcached",
        metadata={"hosts": "127.0.0.1:11211"},
        requires=("memcached",),
        features=frozenset({StateFeature.TTL}),
        traits=None,
    ),
    BackendRow(
        block="state",
        type="zookeeper",
        metadata={
            "servers": "127.0.0.1:2181",
            "sessionTimeout": "10s",
            "keyPrefixPath": "/layotto-state-test",
            "maxBufferSize": str(8 * 1024 * 1024),
            "maxConnBufferSize": str(8 * 1024 * 1024),
        },
        requires=("zookeeper",),
        features=frozenset({StateFeature.ETAG}),
        traits=None,
    ),
    # A pluggable component (Dapr's protocol): the suites' own store in a process of its own,
    # found on its socket; its features are the ones it reports.
    BackendRow(
        block="state",
        type="test-pluggable-state",
        name="pluggable",
        features=FEATURES,
        traits=None,
        registry=state_registry,
    ),
]

#: The store on a Redis Cluster. Not in ROWS: the suites' transactions take unrelated random
#: keys, which a cluster keeps in different slots and refuses (InvalidArgumentError) instead of
#: applying them non-atomically. tests/e2e/test_scale_redis_cluster.py runs every other test of
#: the suites on it, and its own transactions within one slot.
CLUSTER_ROW = BackendRow(
    block="state", type="redis", name="redis-on-cluster", metadata=cluster_metadata, features=FEATURES, traits=None
)

#: Store names in every sidecar, by keyPrefix strategy.
STORE = "store"
PREFIXED_STORES = {"name": "store_name", "appid": "store_appid", "custom-prefix": "store_custom"}


def grpc_config(backend: Row) -> dict[str, Any]:
    """One sidecar config with the plain store and one store per keyPrefix strategy."""
    stores = {STORE: backend.entry()}
    for strategy, name in PREFIXED_STORES.items():
        stores[name] = backend.entry(keyPrefix=strategy)
    return {"app": {"app_id": APP_ID}, "state": stores}
