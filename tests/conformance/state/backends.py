"""The state backends under test, one row each. Every suite here is parametrised over this
table, so adding a backend is one row and no test code.

Each backend gets its own table (or database file) named after this run and removed when
the run ends; tests also isolate themselves with unique keys.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg

from tests.support.services import MYSQL, POSTGRES_DSN

RUN = uuid.uuid4().hex[:10]
TABLE = f"layotto_state_test_{RUN}"
APP_ID = "state-conformance-app"
_TMP = Path(tempfile.gettempdir()) / f"layotto-state-test-{RUN}"


async def _drop_pg_table() -> None:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{TABLE}"')
    finally:
        await conn.close()


async def _drop_mysql_table() -> None:
    conn = await aiomysql.connect(
        host=MYSQL["host"], port=MYSQL["port"], user=MYSQL["user"], password=MYSQL["password"], db=MYSQL["database"]
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS `{TABLE}`")
    finally:
        conn.close()


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Backend:
    name: str
    type: str
    metadata: dict[str, str]
    #: The service from tests/support/services.py it needs, if any.
    service: str | None = None
    cleanup: Callable[[], Awaitable[None]] = field(default=_nothing)

    def component(self, **extra: str) -> dict[str, Any]:
        return {"type": self.type, "metadata": {**self.metadata, **extra}}


BACKENDS: list[Backend] = [
    Backend("in-memory", "in-memory", {}),
    Backend("sqlite", "sqlite", {"databasePath": str(_TMP / "state.db")}),
    Backend("redis", "redis", {"redisHost": "127.0.0.1:6379"}, service="redis"),
    Backend(
        "postgresql",
        "postgresql",
        {"connectionString": "host=127.0.0.1 port=5432 user=postgres dbname=test", "tableName": TABLE},
        service="postgresql",
        cleanup=_drop_pg_table,
    ),
    Backend(
        "mysql",
        "mysql",
        {
            "connectionString": f"{MYSQL['user']}:{MYSQL['password']}@tcp({MYSQL['host']}:{MYSQL['port']})/",
            "schemaName": str(MYSQL["database"]),
            "tableName": TABLE,
        },
        service="mysql",
        cleanup=_drop_mysql_table,
    ),
]

#: Store names in every sidecar, by keyPrefix strategy.
STORE = "store"
PREFIXED_STORES = {"name": "store_name", "appid": "store_appid", "custom-prefix": "store_custom"}


def grpc_config(backend: Backend) -> dict[str, Any]:
    """One sidecar config with the plain store and one store per keyPrefix strategy."""
    stores = {STORE: backend.component()}
    for strategy, name in PREFIXED_STORES.items():
        stores[name] = backend.component(keyPrefix=strategy)
    return {"app": {"app_id": APP_ID}, "state": stores}
