"""Dapr's resiliency policies through a real sidecar, over real backends.

Components outbound: a state store on the shared Redis reached through a cuttable proxy
(tests/support/backends.TcpProxy), as the outage suite cuts backends: a retry that succeeds once
the backend is back, a breaker that opens (answers UNAVAILABLE naming itself at once, the
backend untouched) and closes again, a timeout on a frozen backend. Apps: invocations retried
while the app fails, filtered by `matching`, cut short by a timeout, refused by a breaker.
Pub/sub inbound: deliveries retried by the policy before the event is dead-lettered.

Policies use tens of milliseconds, so each test takes about a second at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from layotto.config import dapr_yaml, layotto_json
from layotto.observability.metrics import registry
from layotto.runtime.delivery import DeliveryService
from layotto.runtime.resiliency import Policy
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import RETRY, SUCCESS, CallbackApp
from tests.e2e.invoke_apps import grpc_app, http_app
from tests.support.backends import TcpProxy
from tests.support.services import SERVICES, require
from tests.support.sidecar import free_port, layotto_config

RUN = uuid.uuid4().hex[:8]
STORE = "store"


@contextlib.asynccontextmanager
async def sidecar_with(
    grpc_config: dict[str, Any], resiliency: dict[str, Any] | None = None, resources: str = ""
) -> AsyncIterator[tuple[Sidecar, runtime_pb2_grpc.RuntimeStub]]:
    """An in-process sidecar with the Layotto JSON `resiliency` section, and/or a Resiliency
    document in a resources folder."""
    port = free_port()
    doc = layotto_config(grpc_config, grpc_port=port)
    if resiliency is not None:
        doc["resiliency"] = resiliency
    cfg = layotto_json.load_document(doc, source="<test>")
    if resources:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "resiliency.yaml").write_text(textwrap.dedent(resources))
            dapr_yaml.load_into(cfg, folder)
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield sidecar, runtime_pb2_grpc.RuntimeStub(channel)
    finally:
        await sidecar.stop()


class CountingProxy(TcpProxy):
    """The cuttable path to the shared Redis, counting the connections the sidecar opens."""

    def __init__(self) -> None:
        require("redis")
        super().__init__("redis", SERVICES["redis"][1])
        self.accepted = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await super()._accept(reader, writer)


@contextlib.asynccontextmanager
async def redis_proxy() -> AsyncIterator[CountingProxy]:
    proxy = CountingProxy()
    await proxy.up()
    try:
        yield proxy
    finally:
        await proxy.close()


def _state_config(port: int) -> dict[str, Any]:
    return {
        "app": {"app_id": f"res-{RUN}"},
        "state": {STORE: {"type": "redis", "metadata": {"redisHost": f"127.0.0.1:{port}"}}},
    }


def _retried(policy: Policy | None) -> asyncio.Event:
    """Set when `policy` first pauses before a retry: the moment a call is known to be retrying."""
    assert policy is not None
    event = asyncio.Event()
    pause = policy._sleep

    async def noted(seconds: float) -> None:
        event.set()
        await pause(seconds)

    policy._sleep = noted
    return event


async def _save(stub: runtime_pb2_grpc.RuntimeStub, key: str, value: bytes) -> None:
    await stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key=key, value=value)]), timeout=10)


async def _get(stub: runtime_pb2_grpc.RuntimeStub, key: str, deadline: float = 10) -> bytes:
    reply = await stub.GetState(pb.GetStateRequest(store_name=STORE, key=key), timeout=deadline)
    return bytes(reply.data)


async def _failure(call: Any) -> tuple[grpc.StatusCode, str, float]:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or "", time.monotonic() - started


def _sample(name: str, **labels: str) -> float:
    return registry().get_sample_value(name, labels) or 0.0


# ---- components, outbound ----


async def test_a_retry_succeeds_once_the_backend_is_back() -> None:
    policies = {
        "policies": {"retries": {"fast": {"policy": "constant", "duration": "50ms", "maxRetries": -1}}},
        "targets": {"components": {STORE: {"outbound": {"retry": "fast"}}}},
    }
    key = f"res-retry-{RUN}"
    async with redis_proxy() as proxy, sidecar_with(_state_config(proxy.port), policies) as (sidecar, stub):
        await _save(stub, key, b"kept")
        assert sidecar.rt.resiliency is not None
        retrying = _retried(sidecar.rt.resiliency.outbound("state", STORE))
        before = _sample("layotto_resiliency_retries_total", policy="fast", target=f"component:{STORE}:outbound")
        await proxy.down()
        call = asyncio.ensure_future(_get(stub, key, deadline=20))
        await asyncio.wait_for(retrying.wait(), 10)
        assert not call.done(), "the call must wait for the backend, not fail"
        await proxy.up()
        assert await asyncio.wait_for(call, 15) == b"kept"
        after = _sample("layotto_resiliency_retries_total", policy="fast", target=f"component:{STORE}:outbound")
        assert after > before


async def test_a_breaker_opens_refuses_without_the_backend_then_closes() -> None:
    policies = {
        "policies": {
            "circuitBreakers": {"cb": {"maxRequests": 1, "timeout": "1s", "trip": "consecutiveFailures >= 2"}}
        },
        "targets": {"components": {STORE: {"outbound": {"circuitBreaker": "cb"}}}},
    }
    key = f"res-cb-{RUN}"
    gauge = {"breaker": f"cb-{STORE}", "target": f"component:{STORE}:outbound"}
    async with redis_proxy() as proxy, sidecar_with(_state_config(proxy.port), policies) as (_, stub):
        await _save(stub, key, b"v")
        assert _sample("layotto_resiliency_breaker_state", **gauge) == 0
        await proxy.down()
        for _ in range(2):
            code, details, _ = await _failure(_get(stub, key))
            assert code == grpc.StatusCode.UNAVAILABLE and "redis" in details.lower(), details
        assert _sample("layotto_resiliency_breaker_state", **gauge) == 2
        # The backend is back, but the breaker is open: answered at once, the backend never asked.
        await proxy.up()
        accepted = proxy.accepted
        code, details, took = await _failure(_get(stub, key))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert details == f"fail to get {key} from state store {STORE}: circuit breaker is open (breaker 'cb-{STORE}')"
        assert took < 0.5
        assert proxy.accepted == accepted
        # After the open period a probe goes through; it succeeds, and the breaker closes.
        await asyncio.sleep(1.0)
        assert _sample("layotto_resiliency_breaker_state", **gauge) == 1
        assert await _get(stub, key) == b"v"
        assert proxy.accepted > accepted, "the probe reaches the backend"
        assert _sample("layotto_resiliency_breaker_state", **gauge) == 0
        assert await _get(stub, key) == b"v"


async def test_a_timeout_fires_on_a_frozen_backend() -> None:
    resources = f"""\
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata:
      name: timeouts
    spec:
      policies:
        timeouts:
          quick: 200ms
      targets:
        components:
          {STORE}:
            outbound:
              timeout: quick
    """
    key = f"res-timeout-{RUN}"
    async with redis_proxy() as proxy, sidecar_with(_state_config(proxy.port), resources=resources) as (_, stub):
        await _save(stub, key, b"v")
        before = _sample("layotto_resiliency_timeouts_total", policy="quick", target=f"component:{STORE}:outbound")
        await proxy.freeze()
        try:
            code, details, took = await _failure(_get(stub, key))
        finally:
            await proxy.thaw()
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
        assert details == f"fail to get {key} from state store {STORE}: context deadline exceeded"
        assert 0.15 < took < 1.5
        assert _sample("layotto_resiliency_timeouts_total", policy="quick", target=f"component:{STORE}:outbound") == (
            before + 1
        )
        assert await _get(stub, key) == b"v"


# ---- apps ----


class FlakyApp(cb_grpc.AppCallbackServicer):
    """Fails the first `failures` invocations with `code`, then answers."""

    def __init__(self, failures: int, code: grpc.StatusCode) -> None:
        self.failures = failures
        self.code = code
        self.calls = 0

    async def OnInvoke(self, request: cb.AppInvokeRequest, context: Any) -> cb.AppInvokeResponse:
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(self.code, f"failure {self.calls} of the app")
        return cb.AppInvokeResponse(data=any_pb2.Any(value=b"answered"), content_type="text/plain")


@contextlib.asynccontextmanager
async def flaky_app(failures: int, code: grpc.StatusCode) -> AsyncIterator[tuple[FlakyApp, int]]:
    app = FlakyApp(failures, code)
    server = grpc.aio.server()
    cb_grpc.add_AppCallbackServicer_to_server(app, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield app, port
    finally:
        await server.stop(None)


def _invoke(stub: runtime_pb2_grpc.RuntimeStub, app_id: str, method: str = "hello") -> Any:
    message = pb.CommonInvokeRequest(method=method, data=any_pb2.Any(value=b"hi"))
    return stub.InvokeService(pb.InvokeServiceRequest(id=app_id, message=message), timeout=10)


def _app_policies(app_id: str, target: dict[str, str], **policies: dict[str, Any]) -> dict[str, Any]:
    return {"policies": policies, "targets": {"apps": {app_id: target}}}


@pytest.mark.parametrize(
    ("code", "matching", "calls", "answered"),
    [
        # Transient failures are retried without `matching`.
        (grpc.StatusCode.UNAVAILABLE, None, 3, True),
        # Other codes only when `matching` names them...
        (grpc.StatusCode.INTERNAL, {"gRPCStatusCodes": "13"}, 3, True),
        (grpc.StatusCode.INTERNAL, None, 1, False),
        # ... and then only them.
        (grpc.StatusCode.UNAVAILABLE, {"gRPCStatusCodes": "4,13"}, 1, False),
    ],
)
async def test_invocations_are_retried_while_the_app_fails(
    code: grpc.StatusCode, matching: dict[str, str] | None, calls: int, answered: bool
) -> None:
    app_id = f"flaky-{uuid.uuid4().hex[:8]}"
    retry: dict[str, Any] = {"policy": "constant", "duration": "10ms", "maxRetries": 3}
    if matching is not None:
        retry["matching"] = matching
    policies = _app_policies(app_id, {"retry": "fast"}, retries={"fast": retry})
    async with (
        flaky_app(2, code) as (app, port),
        sidecar_with({"app": {"app_id": app_id, "grpc_callback_port": port}}, policies) as (_, stub),
    ):
        if answered:
            reply = await _invoke(stub, app_id)
            assert reply.data.value == b"answered"
        else:
            got, details, _ = await _failure(_invoke(stub, app_id))
            assert (got, details) == (code, "failure 1 of the app")
        assert app.calls == calls


async def test_an_http_apps_status_codes_are_matched() -> None:
    app_id = f"http-{uuid.uuid4().hex[:8]}"
    retry = {"duration": "10ms", "maxRetries": 2, "matching": {"httpStatusCodes": "500-503"}}
    policies = _app_policies(app_id, {"retry": "boom"}, retries={"boom": retry})
    async with (
        http_app(app_id) as (seen, port),
        sidecar_with({"app": {"app_id": app_id, "http_port": port}}, policies) as (_, stub),
    ):
        code, details, _ = await _failure(_invoke(stub, app_id, "boom"))
        assert code == grpc.StatusCode.UNAVAILABLE and details.startswith("http response code 500"), details
        assert sum(1 for r in seen.calls if r.path == "/boom") == 3


async def test_a_slow_app_is_cut_short_by_its_timeout() -> None:
    app_id = f"slow-{uuid.uuid4().hex[:8]}"
    policies = _app_policies(app_id, {"timeout": "quick"}, timeouts={"quick": "100ms"})
    async with (
        grpc_app(app_id) as (_, port),
        sidecar_with({"app": {"app_id": app_id, "grpc_callback_port": port}}, policies) as (_, stub),
    ):
        code, details, took = await _failure(_invoke(stub, app_id, "sleep"))  # the app takes 2 s
        assert (code, details) == (grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
        assert took < 1.0
        reply = await _invoke(stub, app_id, "fast")
        assert b'"method": "fast"' in reply.data.value


async def test_an_apps_breaker_refuses_calls_once_open() -> None:
    app_id = f"down-{uuid.uuid4().hex[:8]}"
    policies = _app_policies(
        app_id, {"circuitBreaker": "cb"}, circuitBreakers={"cb": {"trip": "consecutiveFailures >= 2", "timeout": "30s"}}
    )
    async with (
        flaky_app(10**6, grpc.StatusCode.UNAVAILABLE) as (app, port),
        sidecar_with({"app": {"app_id": app_id, "grpc_callback_port": port}}, policies) as (_, stub),
    ):
        for _ in range(2):
            code, _, _ = await _failure(_invoke(stub, app_id))
            assert code == grpc.StatusCode.UNAVAILABLE
        code, details, _ = await _failure(_invoke(stub, app_id))
        assert (code, details) == (grpc.StatusCode.UNAVAILABLE, f"circuit breaker is open (breaker 'cb-{app_id}')")
        assert app.calls == 2


# ---- pub/sub, inbound ----


async def test_pubsub_deliveries_are_retried_by_the_inbound_policy_before_dead_letter() -> None:
    require("redis")
    pubsub = "ps"
    topic, dead = f"res-{RUN}-{uuid.uuid4().hex[:8]}", f"res-dead-{RUN}-{uuid.uuid4().hex[:8]}"
    tries: dict[bytes, int] = {}

    def behaviour(event: cb.TopicEventRequest) -> int:
        if event.topic == dead:
            return SUCCESS
        tries[event.data] = tries.get(event.data, 0) + 1
        # "flaky" is taken on its second delivery; "poison" never.
        return SUCCESS if event.data == b"flaky" and tries[event.data] == 2 else RETRY

    app = CallbackApp([(pubsub, topic, {"deadLetterTopic": dead}), (pubsub, dead, {})], behaviour)
    app_id = f"res-ps-{uuid.uuid4().hex[:8]}"
    config = {
        "app": {"app_id": app_id, "grpc_callback_port": app.port},
        "pub_subs": {pubsub: {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}}},
    }
    policies = {
        "policies": {"retries": {"redeliver": {"duration": "10ms", "maxRetries": 2}}},
        "targets": {"components": {pubsub: {"inbound": {"retry": "redeliver"}}}},
    }
    await app.start()
    try:
        async with sidecar_with(config, policies) as (sidecar, stub):
            delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
            await asyncio.wait_for(delivery.ready.wait(), 10)
            for data in (b"flaky", b"poison"):
                await stub.PublishEvent(
                    pb.PublishEventRequest(pubsub_name=pubsub, topic=topic, data=data, data_content_type="text/plain"),
                    timeout=10,
                )
            await app.wait_for(lambda: any(e.topic == dead for e in app.received) and app.succeeded[b"flaky"] == 1)
            # daprd dead-letters after one failed delivery; the policy's two retries come first.
            assert tries == {b"flaky": 2, b"poison": 3}
            assert [e.data for e in app.received if e.topic == dead] == [b"poison"]
            assert delivery.stats.dead_lettered == 1
    finally:
        await app.stop()
        await _delete_streams(topic, dead)


async def _delete_streams(*topics: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis(host="127.0.0.1", port=SERVICES["redis"][1])
    try:
        await client.delete(*topics)
    finally:
        await client.aclose()
