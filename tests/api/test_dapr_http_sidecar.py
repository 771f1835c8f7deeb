"""Dapr's HTTP endpoints about the sidecar (health, metadata, shutdown), the API token, and the
HTTP API's place in the sidecar's life: calls in flight finish before the components close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from aiohttp import web

from layotto.config import layotto_json
from layotto.errors import ConfigError
from layotto.sidecar import Sidecar
from tests.api.clients import DaprApi
from tests.api.conftest import API_TOKEN, APP_ID, MEMORY, DaprHttp, dapr_http_sidecar
from tests.support.sidecar import free_port, layotto_config

from dapr.proto.runtime.v1 import metadata_pb2 as dmetadata  # isort: skip  (after tests.api.clients: it silences dapr)

WITHIN = 10.0


# ---- health ----


async def test_healthz(dapr_http: DaprHttp) -> None:
    for path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
        reply = await dapr_http("GET", path)
        assert (reply.status, reply.body) == (204, b"")
    assert (await dapr_http("GET", "/v1.0/healthz", params=[("appid", APP_ID)])).status == 204
    other = await dapr_http("GET", "/v1.0/healthz", params=[("appid", "someone-else")])
    assert other.error == (500, "ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match")


async def test_healthz_while_not_serving(dapr_http_empty: DaprHttp) -> None:
    rt = dapr_http_empty.sidecar.rt
    rt.status = "INIT"
    try:
        inbound = await dapr_http_empty("GET", "/v1.0/healthz")
        assert inbound.error == (500, "ERR_HEALTH_NOT_READY", "dapr is not ready: [runtime]")
        outbound = await dapr_http_empty("GET", "/v1.0/healthz/outbound")
        assert outbound.error == (500, "ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready")
    finally:
        rt.status = "UP"


# ---- metadata ----


async def test_metadata(dapr_http: DaprHttp) -> None:
    reply = await dapr_http("GET", "/v1.0/metadata")
    assert reply.status == 200
    doc = reply.json()
    assert doc["id"] == APP_ID
    assert doc["runtimeVersion"].startswith("layotto-")
    components = {c["name"]: c for c in doc["components"]}
    assert components[MEMORY] == {
        "name": MEMORY,
        "type": "state.in-memory",
        "version": "v1",
        "capabilities": ["ETAG", "TRANSACTIONAL", "TTL"],
    }
    assert doc["appConnectionProperties"]["protocol"] == "http"
    assert doc["extended"]["daprRuntimeVersion"] == doc["runtimeVersion"]
    assert doc["actorRuntime"] == {"runtimeStatus": "INITIALIZING", "hostReady": False}


async def test_metadata_attributes_are_shared_with_the_grpc_api(dapr_http: DaprHttp) -> None:
    put = await dapr_http("PUT", "/v1.0/metadata/color", data="blue")
    assert (put.status, put.body) == (204, b"")
    assert (await dapr_http("GET", "/v1.0/metadata")).json()["extended"]["color"] == "blue"
    async with grpc.aio.insecure_channel(dapr_http.grpc_address) as channel:
        stub = DaprApi(channel).stub
        seen = await stub.GetMetadata(dmetadata.GetMetadataRequest())
        assert seen.extended_metadata["color"] == "blue"
        await stub.SetMetadata(dmetadata.SetMetadataRequest(key="shape", value="round"))
    assert (await dapr_http("GET", "/v1.0/metadata")).json()["extended"]["shape"] == "round"


# ---- the API token ----


async def test_api_token(dapr_http_token: DaprHttp) -> None:
    path = f"/v1.0/state/{MEMORY}/k"
    for headers in (None, {"dapr-api-token": "wrong"}):
        refused = await dapr_http_token("GET", path, headers=headers)
        assert (refused.status, refused.body) == (401, b"invalid api token\n")
        assert refused.headers["Content-Type"] == "text/plain; charset=utf-8"
    allowed = await dapr_http_token("GET", path, headers={"dapr-api-token": API_TOKEN})
    assert allowed.status == 204
    # As daprd: only GETs of the health endpoints go without it.
    for health in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
        assert (await dapr_http_token("GET", health)).status == 204
        assert (await dapr_http_token("POST", health)).status == 401
    assert (await dapr_http_token("GET", "/v1.0/metadata")).status == 401


# ---- the sidecar's life ----


@contextlib.asynccontextmanager
async def slow_app() -> AsyncIterator[tuple[int, asyncio.Event, asyncio.Event]]:
    """An app whose every call waits for `release`; `entered` is set once one arrives."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="done")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hold)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, entered, release
    finally:
        release.set()
        await runner.cleanup()


async def test_stop_lets_calls_in_flight_finish_first(
    http_session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with slow_app() as (port, entered, release):
        config = {"app": {"app_id": "slow", "http_port": port}, "state": {MEMORY: {"type": "in-memory"}}}
        async with dapr_http_sidecar(config, http_session) as running:
            http = running.sidecar.dapr_http
            assert http is not None
            draining, drain = asyncio.Event(), http.stop

            async def stop_and_tell() -> None:
                draining.set()
                await drain()

            monkeypatch.setattr(http, "stop", stop_and_tell)
            call = asyncio.create_task(running("POST", "/v1.0/invoke/slow/method/work", data="x"))
            await asyncio.wait_for(entered.wait(), WITHIN)
            stopping = asyncio.create_task(running.sidecar.stop())
            # The HTTP API stops first and waits for the call; the components are still up.
            await asyncio.wait_for(draining.wait(), WITHIN)
            assert not stopping.done()
            assert running.sidecar.rt.components("state")
            assert running.sidecar.invoker is not None
            release.set()
            reply = await asyncio.wait_for(call, WITHIN)
            assert (reply.status, reply.body) == (200, b"done")
            await asyncio.wait_for(stopping, WITHIN)
            with pytest.raises(aiohttp.ClientConnectionError):
                await running("GET", "/v1.0/healthz")


async def test_shutdown_endpoint_stops_the_sidecar(http_session: aiohttp.ClientSession) -> None:
    async with dapr_http_sidecar({"app": {"app_id": "bye"}}, http_session) as running:
        reply = await running("POST", "/v1.0/shutdown")
        assert (reply.status, reply.body) == (204, b"")
        await asyncio.wait_for(running.sidecar.wait(), WITHIN)
        assert running.sidecar.rt.status == "DOWN"
        assert running.sidecar.dapr_http is None


async def test_an_address_in_use_is_a_config_error(http_session: aiohttp.ClientSession, dapr_http: DaprHttp) -> None:
    taken = dapr_http.base.rsplit(":", 1)[1]
    doc = layotto_config({"app": {"app_id": "twin"}}, grpc_port=free_port())
    doc["dapr_http"] = {"address": f"127.0.0.1:{taken}"}
    sidecar = Sidecar(layotto_json.load_document(doc, source="<test>"))
    with pytest.raises(ConfigError, match=f"Dapr HTTP API cannot listen on 127.0.0.1:{taken}"):
        await sidecar.start()
    await sidecar.stop()
