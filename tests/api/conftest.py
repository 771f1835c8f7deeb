"""The API suite's sidecars: one with an embedded backend for every block (in-memory, SQLite,
a local HTTP server, a JSON secrets file), one with no components at all (for the "not
configured" answers). Both are in-process and shared by the whole package; every test takes
`api`, run once per gRPC API (Layotto's and Dapr's, served on the same port).

Dapr's HTTP API has sidecars of its own (`dapr_http`, `dapr_http_empty`, `dapr_http_token`),
with the same components and an HTTP app behind them, and a raw HTTP client (`DaprHttp`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from layotto.config import layotto_json
from layotto.runtime.registry import ComponentRegistry
from layotto.sidecar import Sidecar
from tests.api.clients import APIS, Api, client
from tests.contract.bindings.httpkv import http_server
from tests.support import fakes
from tests.support.sidecar import free_port, layotto_config, running_sidecar

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
    with tempfile.TemporaryDirectory(prefix="layotto-api-test-") as scratch:
        async with http_server() as base:
            async with running_sidecar(grpc_config(base, Path(scratch)), fakes.registry()) as running:
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


# ---- Dapr's HTTP API (daprd's /v1.0/...) on its own sidecars ----

API_TOKEN = "http-t0ken"


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> tuple[int, str, str]:
        """(status, daprd's errorCode, message) of an error reply."""
        doc = self.json()
        assert set(doc) == {"errorCode", "message"}, doc
        return self.status, doc["errorCode"], doc["message"]


class DaprHttp:
    """Raw HTTP calls to one sidecar's Dapr HTTP API."""

    def __init__(self, session: aiohttp.ClientSession, base: str, sidecar: Sidecar, grpc_address: str) -> None:
        self.session = session
        self.base = base
        self.sidecar = sidecar
        self.grpc_address = grpc_address

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: list[tuple[str, str]] | None = None,
    ) -> Reply:
        body = data if json_body is None else json.dumps(json_body)
        url = URL(self.base + path, encoded=True)
        async with self.session.request(method, url, data=body, headers=headers, params=params) as reply:
            return Reply(reply.status, reply.headers, await reply.read())


@dataclass
class AppServer:
    """The app behind the HTTP sidecar: echoes invocations, keeps configuration updates."""

    port: int
    updates: asyncio.Queue[tuple[str, Any]]


@contextlib.asynccontextmanager
async def app_server() -> AsyncIterator[AppServer]:
    updates: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def configuration(request: web.Request) -> web.Response:
        await updates.put((request.path, await request.json()))
        return web.Response(status=200)

    async def echo(request: web.Request) -> web.Response:
        doc = {
            "method": request.method,
            "path": request.path,
            "query": request.rel_url.raw_query_string,
            "headers": dict(request.headers),
            "body": (await request.read()).decode(errors="replace"),
        }
        return web.json_response(doc, headers={"X-Echo": "yes"})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status body")

    app = web.Application()
    app.router.add_route("POST", "/configuration/{store}/{key}", configuration)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield AppServer(port, updates)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def dapr_http_sidecar(
    grpc_config: dict[str, Any],
    session: aiohttp.ClientSession,
    *,
    token: str | None = None,
    registry: ComponentRegistry | None = None,
) -> AsyncIterator[DaprHttp]:
    """An in-process sidecar whose config turns Dapr's HTTP API on (`"dapr_http"`)."""
    grpc_port, http_port = free_port(), free_port()
    doc = layotto_config(grpc_config, grpc_port=grpc_port)
    doc["dapr_http"] = {"address": f"127.0.0.1:{http_port}"}
    cfg = layotto_json.load_document(doc, source="<test>")
    cfg.api_token = token
    sidecar = Sidecar(cfg, registry)
    await sidecar.start()
    try:
        yield DaprHttp(session, f"http://127.0.0.1:{http_port}", sidecar, f"127.0.0.1:{grpc_port}")
    finally:
        await sidecar.stop()


@pytest.fixture(scope="package")
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="package")
async def http_app() -> AsyncIterator[AppServer]:
    async with app_server() as app:
        yield app


@pytest.fixture(scope="package")
async def dapr_http(http_session: aiohttp.ClientSession, http_app: AppServer) -> AsyncIterator[DaprHttp]:
    """Dapr's HTTP API on a sidecar with every block's embedded backend and an HTTP app."""
    with tempfile.TemporaryDirectory(prefix="layotto-dapr-http-") as scratch:
        async with http_server() as base:
            config = grpc_config(base, Path(scratch))
            config["app"] = {"app_id": APP_ID, "http_port": http_app.port}
            async with dapr_http_sidecar(config, http_session, registry=fakes.registry()) as running:
                yield running


@pytest.fixture(scope="package")
async def dapr_http_empty(http_session: aiohttp.ClientSession) -> AsyncIterator[DaprHttp]:
    """Dapr's HTTP API on a sidecar without components (and without an app)."""
    async with dapr_http_sidecar({"app": {"app_id": "api-empty"}}, http_session) as running:
        yield running


@pytest.fixture(scope="package")
async def dapr_http_token(http_session: aiohttp.ClientSession) -> AsyncIterator[DaprHttp]:
    """Dapr's HTTP API on a sidecar that wants the API token."""
    config = {"app": {"app_id": "api-token"}, "state": {MEMORY: {"type": "in-memory", "metadata": {}}}}
    async with dapr_http_sidecar(config, http_session, token=API_TOKEN) as running:
        yield running
