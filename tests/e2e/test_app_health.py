"""daprd's app health checks: an app that fails its probes gets no events until it passes
them again; the events wait in the broker meanwhile (Redis Streams here), none is lost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp import web

from layotto.cli import DaprFlags, load_config
from layotto.config import layotto_json
from layotto.config.model import AppHealthCheck
from layotto.runtime.delivery import DeliveryService
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.httpapp import http_server
from tests.support.services import require
from tests.support.sidecar import free_port, layotto_config

TOPIC = f"health-{uuid.uuid4().hex[:8]}"


class ProbedApp:
    def __init__(self) -> None:
        self.healthy = True
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def subscribe(self, request: web.Request) -> web.Response:
        return web.json_response([{"pubsubname": "ps", "topic": TOPIC, "route": "/events"}])

    async def event(self, request: web.Request) -> web.Response:
        self.events.put_nowait(await request.json())
        return web.json_response({"status": "SUCCESS"})


@contextlib.asynccontextmanager
async def serving(app: ProbedApp) -> AsyncIterator[int]:
    routes = web.Application()
    routes.router.add_get("/healthz", app.healthz)
    routes.router.add_get("/dapr/subscribe", app.subscribe)
    routes.router.add_post("/events", app.event)
    async with http_server(routes) as port:
        yield port


async def test_an_unhealthy_app_gets_its_events_once_healthy_again() -> None:
    require("redis")
    app = ProbedApp()
    async with serving(app) as app_port:
        grpc_port = free_port()
        grpc_config = {
            "app": {"app_id": "probed", "http_port": app_port},
            "pub_subs": {"ps": {"type": "redis", "metadata": {"redisHost": "localhost:6379"}}},
        }
        cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=grpc_port), source="<test>")
        cfg.app.health_check = AppHealthCheck(interval=0.05, timeout=0.5, threshold=2)
        sidecar = Sidecar(cfg)
        await sidecar.start()
        try:
            assert sidecar.app_health is not None
            delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
            await asyncio.wait_for(delivery.ready.wait(), 10)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = runtime_pb2_grpc.RuntimeStub(channel)

                async def publish(text: str) -> None:
                    request = pb.PublishEventRequest(pubsub_name="ps", topic=TOPIC, data=text.encode())
                    await stub.PublishEvent(request)

                await publish("while healthy")
                assert (await asyncio.wait_for(app.events.get(), 10))["data"] == "while healthy"

                app.healthy = False
                await asyncio.wait_for(sidecar.app_health.wait_for(healthy=False), 10)
                assert delivery.subscriptions == []
                await publish("while unhealthy")
                with pytest.raises(TimeoutError):  # nothing is sent to an unhealthy app
                    await asyncio.wait_for(app.events.get(), 0.5)

                app.healthy = True
                await asyncio.wait_for(sidecar.app_health.wait_for(healthy=True), 10)
                assert (await asyncio.wait_for(app.events.get(), 10))["data"] == "while unhealthy"
        finally:
            await sidecar.stop()


def test_daprd_flags_turn_the_checks_on_with_daprd_defaults() -> None:
    cfg = load_config(None, None, DaprFlags(app_id="a", app_port=8080, app_protocol="http"))
    assert cfg.app.health_check is None
    from layotto import cli

    parsed: dict[str, Any] = {}

    def run(config: Any) -> None:
        parsed["health"] = config.app.health_check

    original = cli._run
    cli._run = run
    try:
        argv = ["start", "--app-id", "a", "--app-port", "8080", "--app-protocol", "http", "--enable-app-health-check"]
        assert cli.main([*argv, "--app-health-probe-timeout", "250"]) == 0
    finally:
        cli._run = original
    assert parsed["health"] == AppHealthCheck(path="/healthz", interval=5, timeout=0.25, threshold=3)
