"""A Dapr FastAPI app (`dapr.ext.fastapi.DaprApp`, i.e. dapr-ext-fastapi) moved over unchanged,
beside a Layotto app: two sidecars on one Redis, one started from Dapr component YAML for the
Dapr app (HTTP), one from a Layotto JSON config for the Layotto app (gRPC, Layotto's SDK).
They share one state store and one topic across the two APIs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from layotto_sdk import AsyncClient

from layotto.config import dapr_yaml, layotto_json
from layotto.config.model import RuntimeConfig
from layotto.runtime.delivery import DeliveryService
from layotto.sidecar import Sidecar
from tests.support.services import require
from tests.support.sidecar import free_port, layotto_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import uvicorn
    from dapr.ext.fastapi import DaprApp
    from fastapi import Body, FastAPI, Response

RUN = uuid.uuid4().hex[:8]
TOPIC = f"orders-{RUN}"
STORE, PUBSUB = "shared-store", "shared-pubsub"
#: Both sidecars name the Redis state store alike and keep keys unprefixed, so either app
#: reads what the other wrote.
REDIS_STATE = {"redisHost": "localhost:6379", "keyPrefix": "none"}
#: One consumer group per app: both apps get every event of the topic.
REDIS_PUBSUB = {"redisHost": "localhost:6379"}


def _resources(tmp: Path) -> Path:
    folder = tmp / "resources"
    folder.mkdir()
    (folder / "components.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata: {{name: {STORE}}}
            spec:
              type: state.redis
              version: v1
              metadata:
              - {{name: redisHost, value: "localhost:6379"}}
              - {{name: keyPrefix, value: none}}
            ---
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata: {{name: {PUBSUB}}}
            spec:
              type: pubsub.redis
              version: v1
              metadata:
              - {{name: redisHost, value: "localhost:6379"}}
            """
        )
    )
    return folder


class FastApiDaprApp:
    """The Dapr app as its authors wrote it: FastAPI + DaprApp, served by uvicorn."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.failures_left = 1
        app = FastAPI()
        dapr_app = DaprApp(app)

        @dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC)
        def on_order(event: dict[str, Any] = Body()) -> Any:  # noqa: B008  (FastAPI's way)
            if event.get("data", {}).get("flaky") and self.failures_left:
                self.failures_left -= 1
                return Response(status_code=500)  # retried by the sidecar, as by daprd
            self.events.put_nowait(event)
            return {"status": "SUCCESS"}

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))

    async def next_event(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), 15)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        # uvicorn's own steps, so that the app is known to listen before the sidecar asks it.
        server, config = self.server, self.server.config
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        loop = asyncio.create_task(server.main_loop())
        try:
            yield
        finally:
            server.should_exit = True
            await loop
            await server.shutdown()


@contextlib.asynccontextmanager
async def started(cfg: RuntimeConfig) -> AsyncIterator[Sidecar]:
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        yield sidecar
    finally:
        await sidecar.stop()


async def _subscribed(sidecar: Sidecar) -> None:
    delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
    await asyncio.wait_for(delivery.ready.wait(), 15)


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[tuple[FastApiDaprApp, str, AsyncClient]]:
    require("redis")
    dapr_app = FastApiDaprApp()
    dapr_http = f"127.0.0.1:{free_port()}"
    dapr_cfg = RuntimeConfig(actuator_address=None)
    dapr_cfg.grpc_address = f"127.0.0.1:{free_port()}"
    dapr_cfg.app.app_id, dapr_cfg.app.http_port = f"dapr-{RUN}", dapr_app.port
    dapr_cfg.dapr_http_address = dapr_http
    dapr_yaml.load_into(dapr_cfg, str(_resources(tmp_path)))

    layotto_port = free_port()
    grpc_config = {
        "app": {"app_id": f"layotto-{RUN}"},
        "state": {STORE: {"type": "redis", "metadata": REDIS_STATE}},
        "pub_subs": {PUBSUB: {"type": "redis", "metadata": REDIS_PUBSUB}},
    }
    layotto_cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=layotto_port), source="<test>")
    async with dapr_app.serving(), started(dapr_cfg) as dapr_sidecar, started(layotto_cfg):
        await _subscribed(dapr_sidecar)
        async with AsyncClient(f"127.0.0.1:{layotto_port}") as layotto:
            yield dapr_app, f"http://{dapr_http}", layotto


async def test_the_fastapi_app_gets_events_published_through_either_api(
    apps: tuple[FastApiDaprApp, str, AsyncClient],
) -> None:
    dapr_app, dapr_http, layotto = apps
    # From the Layotto app, through the Layotto API of the other sidecar.
    await layotto.publish_event(PUBSUB, TOPIC, {"order": 1, "from": "layotto"})
    event = await dapr_app.next_event()
    assert event["data"] == {"order": 1, "from": "layotto"} and event["topic"] == TOPIC
    # From curl, through Dapr's HTTP API; a failed delivery (500) is retried until it succeeds.
    async with httpx.AsyncClient() as http:
        reply = await http.post(f"{dapr_http}/v1.0/publish/{PUBSUB}/{TOPIC}", json={"order": 2, "flaky": True})
        assert reply.status_code == 204
    event = await dapr_app.next_event()
    assert event["data"] == {"order": 2, "flaky": True} and dapr_app.failures_left == 0
    assert event["type"] == "com.dapr.event.sent" and event["source"] == f"dapr-{RUN}"


async def test_one_store_read_and_written_by_both_apps(apps: tuple[FastApiDaprApp, str, AsyncClient]) -> None:
    _, dapr_http, layotto = apps
    key = f"cart-{RUN}"
    await layotto.save_state(STORE, key, {"items": 1})
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"{dapr_http}/v1.0/state/{STORE}/{key}")
        assert reply.status_code == 200 and reply.json() == {"items": 1}
        etag = reply.headers["ETag"]
        saved = await http.post(
            f"{dapr_http}/v1.0/state/{STORE}", json=[{"key": key, "value": {"items": 2}, "etag": etag}]
        )
        assert saved.status_code == 204
        stale = await http.post(
            f"{dapr_http}/v1.0/state/{STORE}", json=[{"key": key, "value": {"items": 3}, "etag": etag}]
        )
        assert stale.status_code == 409 and stale.json()["errorCode"] == "ERR_STATE_SAVE"
    state = await layotto.get_state(STORE, key)
    assert json.loads(state.data) == {"items": 2} and state.etag != etag
