"""The API suite's sidecars: one with an embedded backend for every block (in-memory, SQLite,
a local HTTP server, a JSON secrets file), one with no components at all (for the "not
configured" answers). Both are in-process and shared by the whole package; every test takes
`api`, run once per gRPC API (Layotto's and Dapr's, served on the same port)."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto.sidecar import Sidecar
from tests.api.clients import APIS, Api, client
from tests.contract.bindings.httpkv import http_server
from tests.support import fakes
from tests.support.sidecar import running_sidecar

APP_ID = "api-app"
#: State stores, by the backend behind them.
MEMORY, SQLITE, FEATURELESS = "memory", "sqlite", "featureless"
PUBSUB = "ps"
LOCK = "lock_store"
SECRETS = "secrets"
#: Bindings: `kv` is the test server's key-value store, `web` its root (echo and /status/<code>).
KV, WEB = "kv", "web"
CONFIG = "config"
SECRETS_DOC = {"db": "pw", "nested": {"a": "x"}}


def grpc_config(http_base: str, scratch: Path) -> dict[str, Any]:
    secrets_file = scratch / "secrets.json"
    secrets_file.write_text(json.dumps(SECRETS_DOC))
    return {
        "app": {"app_id": APP_ID},
        "state": {
            MEMORY: {"type": "in-memory", "metadata": {}},
            SQLITE: {"type": "sqlite", "metadata": {"databasePath": str(scratch / "state.db")}},
            FEATURELESS: {"type": fakes.FEATURELESS_STATE, "metadata": {}},
        },
        "pub_subs": {PUBSUB: {"type": "in-memory", "metadata": {}}},
        "lock": {LOCK: {"type": "in-memory", "metadata": {}}},
        "secret_store": {SECRETS: {"type": "local.file", "metadata": {"secretsFile": str(secrets_file)}}},
        "bindings": {
            KV: {"type": "http", "metadata": {"url": f"{http_base}/kv"}},
            WEB: {"type": "http", "metadata": {"url": http_base}},
        },
        "config_store": {CONFIG: {"type": "in-memory", "metadata": {}}},
    }


@pytest.fixture(scope="package")
async def sidecar() -> AsyncIterator[tuple[Sidecar, str]]:
    fakes.register()
    with tempfile.TemporaryDirectory(prefix="layotto-api-test-") as scratch:
        async with http_server() as base, running_sidecar(grpc_config(base, Path(scratch))) as running:
            yield running


@pytest.fixture(scope="package")
async def channel(sidecar: tuple[Sidecar, str]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(sidecar[1]) as opened:
        yield opened


@pytest.fixture(scope="package")
async def empty_channel() -> AsyncIterator[grpc.aio.Channel]:
    async with (
        running_sidecar({"app": {"app_id": "api-empty"}}) as (_, address),
        grpc.aio.insecure_channel(address) as opened,
    ):
        yield opened


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest, channel: grpc.aio.Channel) -> Api:
    return client(request.param, channel)


@pytest.fixture
def empty(api: Api, empty_channel: grpc.aio.Channel) -> Api:
    """The same API on the sidecar without components."""
    return client(api.name, empty_channel)


def new_key() -> str:
    return f"api-{uuid.uuid4().hex[:16]}"
