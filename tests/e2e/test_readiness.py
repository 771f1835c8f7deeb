"""Readiness separates "started" from "a backend is degraded": a component fails it only when
it is critical (its `critical` metadata; by default the state stores and the pub/subs the app
subscribes to), and it waits for the app's subscriptions when there is an app channel.

Backends are real Redis servers reached through a cuttable loopback proxy
(`tests/support/backends.TcpProxy`): cutting it is an outage to the sidecar, the shared
server keeps running. Sidecars run in this process; readiness is read over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto.actuator.http import critical_flags
from layotto.cli import check, load_config
from layotto.config import layotto_json
from layotto.config.model import SubscriptionSpec
from layotto.errors import ConfigError
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc
from tests.support.backends import TcpProxy, proxy_to
from tests.support.sidecar import free_port, layotto_config

#: How soon readiness follows a backend that goes away or comes back (its ping is per probe).
WITHIN = 10.0


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /actuator/health/readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def until_ready(port: int, code: int, status: str) -> dict[str, Any]:
    """Polls readiness (with a deadline) until it answers `code` with overall `status`."""
    deadline = time.monotonic() + WITHIN
    while True:
        got, body = await readiness(port)
        if (got, body["status"]) == (code, status):
            return body
        assert time.monotonic() < deadline, f"readiness not {code} {status} within {WITHIN}s: {got} {body}"
        await asyncio.sleep(0.05)


def _redis(proxy: TcpProxy, **extra: Any) -> dict[str, Any]:
    return {"type": "redis", "metadata": {"redisHost": f"127.0.0.1:{proxy.port}"}, **extra}


@contextlib.asynccontextmanager
async def proxies(count: int) -> AsyncIterator[list[TcpProxy]]:
    found = [proxy_to("redis") for _ in range(count)]
    for proxy in found:
        await proxy.up()
    try:
        yield found
    finally:
        for proxy in found:
            await proxy.close()


@contextlib.asynccontextmanager
async def sidecar(grpc_config: dict[str, Any], subscriptions: Sequence[SubscriptionSpec] = ()) -> AsyncIterator[int]:
    """An in-process sidecar with an actuator; yields the actuator's port."""
    actuator_port = free_port()
    doc = layotto_config(grpc_config, grpc_port=free_port(), actuator_port=actuator_port)
    cfg = layotto_json.load_document(doc, source="<readiness>")
    cfg.subscriptions.extend(subscriptions)
    running = Sidecar(cfg)
    await running.start()
    try:
        yield actuator_port
    finally:
        await running.stop()


def _down(body: dict[str, Any], name: str, critical: bool) -> None:
    entry = body["components"][name]
    assert entry["status"] == "DOWN" and entry["details"]["critical"] is critical, body
    assert "127.0.0.1" in entry["details"]["error"] or "onnect" in entry["details"]["error"], entry


async def test_a_state_store_is_critical_and_a_lock_is_not_by_default() -> None:
    async with proxies(2) as (state, lock):
        config = {"state": {"orders": _redis(state)}, "lock": {"locks": _redis(lock)}}
        async with sidecar(config) as port:
            body = await until_ready(port, 200, "UP")
            assert body["components"]["orders"] == body["components"]["locks"] == {"status": "UP"}
            assert "app_subscriptions" not in body["components"]  # no app channel: nothing to wait for

            await lock.down()
            body = await until_ready(port, 200, "DEGRADED")
            _down(body, "locks", critical=False)
            assert body["components"]["orders"] == {"status": "UP"}

            await state.down()
            body = await until_ready(port, 503, "DOWN")
            _down(body, "orders", critical=True)
            _down(body, "locks", critical=False)

            await state.up()
            await lock.up()
            body = await until_ready(port, 200, "UP")
            assert body["components"]["orders"] == body["components"]["locks"] == {"status": "UP"}


async def test_the_critical_flag_overrides_the_default() -> None:
    async with proxies(2) as (state, lock):
        config = {
            # As metadata, and beside `type` (a Layotto JSON entry's other keys are metadata).
            "state": {
                "cache": {"type": "redis", "metadata": {"redisHost": f"127.0.0.1:{state.port}", "critical": "false"}}
            },
            "lock": {"locks": _redis(lock, critical=True)},
        }
        async with sidecar(config) as port:
            await until_ready(port, 200, "UP")
            await state.down()
            _down(await until_ready(port, 200, "DEGRADED"), "cache", critical=False)
            await lock.down()
            _down(await until_ready(port, 503, "DOWN"), "locks", critical=True)


class _App(appcallback_pb2_grpc.AppCallbackServicer):
    """A Layotto app subscribing to one topic of one pub/sub."""

    def __init__(self, pubsub: str, topic: str) -> None:
        self.subscription = cb.TopicSubscription(pubsub_name=pubsub, topic=topic)

    async def ListTopicSubscriptions(self, request: Any, context: Any) -> cb.ListTopicSubscriptionsResponse:
        return cb.ListTopicSubscriptionsResponse(subscriptions=[self.subscription])

    async def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> cb.TopicEventResponse:
        return cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)


@contextlib.asynccontextmanager
async def app(port: int, pubsub: str, topic: str) -> AsyncIterator[None]:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(_App(pubsub, topic), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield
    finally:
        await server.stop(None)


async def test_the_pub_subs_the_app_subscribes_to_are_critical() -> None:
    topic = f"ready-{uuid.uuid4().hex[:8]}"
    app_port = free_port()
    declared = SubscriptionSpec(name="declared-sub", pubsub_name="declared", topic=topic)
    async with proxies(3) as (events, by_resource, other), app(app_port, "events", topic):
        config = {
            "app": {"app_id": f"ready-{uuid.uuid4().hex[:6]}", "grpc_callback_port": app_port},
            "pub_subs": {"events": _redis(events), "declared": _redis(by_resource), "other": _redis(other)},
        }
        async with sidecar(config, [declared]) as port:
            await until_ready(port, 200, "UP")
            await other.down()  # nobody subscribes to it
            _down(await until_ready(port, 200, "DEGRADED"), "other", critical=False)
            await by_resource.down()  # a Subscription resource subscribes to it
            _down(await until_ready(port, 503, "DOWN"), "declared", critical=True)
            await by_resource.up()
            await until_ready(port, 200, "DEGRADED")
            await events.down()  # the app subscribes to it itself
            _down(await until_ready(port, 503, "DOWN"), "events", critical=True)


async def test_readiness_waits_for_the_apps_subscriptions() -> None:
    topic = f"wait-{uuid.uuid4().hex[:8]}"
    app_port = free_port()
    config = {
        "app": {"app_id": f"wait-{uuid.uuid4().hex[:6]}", "grpc_callback_port": app_port},
        "pub_subs": {"mem": {"type": "in-memory"}},
    }
    async with sidecar(config) as port:
        # Started, but the app is not up to say what it subscribes to.
        code, body = await readiness(port)
        assert (code, body["status"]) == (503, "INIT"), body
        assert body["components"]["runtime_startup"]["status"] == "UP"
        assert body["components"]["app_subscriptions"] == {
            "status": "INIT",
            "details": {"reason": "waiting for the app's subscriptions"},
        }
        async with app(app_port, "mem", topic):
            body = await until_ready(port, 200, "UP")
            assert "app_subscriptions" not in body["components"]


def test_the_critical_flag_in_dapr_yaml_and_a_bad_value(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: cache}\n"
        "spec:\n  type: state.in-memory\n  version: v1\n  metadata:\n  - {name: critical, value: 'false'}\n"
    )
    cfg = load_config(None, str(tmp_path))
    assert critical_flags(cfg) == {("state", "cache"): False}

    doc = layotto_config(
        {"state": {"s": {"type": "in-memory", "metadata": {"critical": "maybe"}}}}, grpc_port=1, actuator_port=2
    )
    bad = layotto_json.load_document(doc, source="c.json")
    with pytest.raises(ConfigError, match="metadata critical must be true or false, got 'maybe'") as caught:
        critical_flags(bad)
    assert "c.json" in str(caught.value)
    # `layotto validate` says so too, and `start` before it listens.
    with pytest.raises(ConfigError, match="metadata critical must be true or false"):
        asyncio.run(check(bad))
    with pytest.raises(ConfigError, match="metadata critical must be true or false"):
        asyncio.run(Sidecar(bad).start())
