"""Two sidecars, two apps: A's app invokes B's app by app id through both sidecars.

The sidecars are real processes; the apps are gRPC servers in this test process. The pair is
shared by the tests of a module (starting processes is slow); the test that kills B is last.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.e2e.invoke_apps import EchoApp, grpc_app
from tests.support.services import require
from tests.support.sidecar import SidecarProcess

Verb = pb.HTTPExtension.Verb


def _config(app_id: str, callback_port: int, name_resolution: dict[str, Any]) -> dict[str, Any]:
    return {"app": {"app_id": app_id, "grpc_callback_port": callback_port}, "name_resolution": name_resolution}


async def _started(proc: SidecarProcess) -> SidecarProcess:
    # SidecarProcess.start blocks while it polls; the apps in this loop must keep serving.
    return await asyncio.to_thread(proc.start)


async def _stop(proc: SidecarProcess) -> None:
    if proc.proc is not None:
        await asyncio.to_thread(proc.terminate)


class Pair:
    def __init__(self, a: SidecarProcess, b: SidecarProcess, app_b: EchoApp, channel: grpc.aio.Channel) -> None:
        self.a, self.b, self.app_b = a, b, app_b
        self.stub = runtime_pb2_grpc.RuntimeStub(channel)

    async def invoke_b(self, method: str = "hello", **kwargs: Any) -> tuple[pb.InvokeResponse, dict[str, Any]]:
        metadata = kwargs.pop("metadata", ())
        call = self.stub.InvokeService(
            pb.InvokeServiceRequest(
                id="app-b", message=pb.CommonInvokeRequest(method=method, data=any_pb2.Any(value=b"ping"), **kwargs)
            ),
            metadata=metadata,
            timeout=10,
        )
        reply = await call
        return reply, dict(await call.initial_metadata() or ())


@pytest.fixture(scope="module", params=["redis", "static"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async with grpc_app("app-a") as (_, port_a), grpc_app("app-b") as (app_b, port_b):
        if request.param == "redis":
            require("redis")
            resolution: dict[str, Any] = {
                "registry": {
                    "type": "redis",
                    "metadata": {"redisHost": "127.0.0.1:6379", "keyPrefix": f"layotto-test-nr:{uuid.uuid4().hex}:"},
                }
            }
            b = SidecarProcess(_config("app-b", port_b, resolution))
        else:
            b = SidecarProcess(_config("app-b", port_b, {}))
            resolution = {"table": {"type": "static", "metadata": {"apps": {"app-b": b.address}}}}
        a = SidecarProcess(_config("app-a", port_a, resolution))
        await _started(b)
        pair: Pair | None = None
        try:
            await _started(a)
            try:
                async with grpc.aio.insecure_channel(a.address) as channel:
                    pair = Pair(a, b, app_b, channel)
                    yield pair
            finally:
                await _stop(a)
        finally:
            # The last test replaces B's process.
            await _stop(pair.b if pair is not None else b)


async def test_a_reaches_b_by_app_id_with_headers_both_ways(pair: Pair) -> None:
    reply, headers = await pair.invoke_b(
        "orders/list",
        content_type="text/plain",
        http_extension=pb.HTTPExtension(verb=Verb.GET, querystring="page=2"),
        metadata=(("x-request-id", "req-42"),),
    )
    doc = json.loads(reply.data.value)
    assert doc["app"] == "app-b"
    assert (doc["method"], doc["data"], doc["content_type"]) == ("orders/list", "ping", "text/plain")
    assert (doc["verb"], doc["query"]) == ("GET", "page=2")
    assert doc["metadata"]["x-request-id"] == "req-42"
    assert "layotto-invoke-hop" not in doc["metadata"]
    assert reply.content_type == "application/x-echo"
    assert headers["x-answered-by"] == "app-b"


async def test_b_app_errors_come_back_unchanged_and_once(pair: Pair) -> None:
    before = len(pair.app_b.seen.calls)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pair.invoke_b("fail")
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "bad input from the app")
    assert len(pair.app_b.seen.calls) == before + 1, "an answered call must not be retried"


async def test_b_down_is_unavailable_and_b_back_works_without_restarting_a(pair: Pair) -> None:
    await pair.invoke_b()
    b_port = pair.b.grpc_port
    await asyncio.to_thread(pair.b.kill)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pair.invoke_b()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == (
        f"the sidecar of app id 'app-b' at 127.0.0.1:{b_port} is unreachable: connection refused"
    )

    pair.b = await _started(SidecarProcess(pair.b.grpc_config, grpc_port=b_port))
    deadline = time.monotonic() + 10
    while True:
        try:
            reply, _ = await pair.invoke_b()
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() < deadline, f"B is back but A still fails: {exc.details()}"
            await asyncio.sleep(0.1)
    assert json.loads(reply.data.value)["app"] == "app-b"


async def test_a_peer_that_cancels_the_call_reads_as_unavailable_not_cancelled() -> None:
    """An overloaded or stopping peer may answer CANCELLED: the caller must not read that as
    its own cancellation (issue 14's overload run saw CANCELLED reach the app)."""

    async def cancel(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")
        raise AssertionError("unreachable")

    handler = grpc.method_handlers_generic_handler(
        "spec.proto.runtime.v1.Runtime", {"InvokeService": grpc.unary_unary_rpc_method_handler(cancel)}
    )
    peer = grpc.aio.server()
    peer.add_generic_rpc_handlers((handler,))
    port = peer.add_insecure_port("127.0.0.1:0")
    await peer.start()
    a = SidecarProcess(
        {
            "app": {"app_id": "app-a"},
            "name_resolution": {"t": {"type": "static", "metadata": {"apps": {"app-b": f"127.0.0.1:{port}"}}}},
        }
    )
    try:
        await _started(a)
        async with grpc.aio.insecure_channel(a.address) as channel:
            request = pb.InvokeServiceRequest(id="app-b", message=pb.CommonInvokeRequest(method="m"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await runtime_pb2_grpc.RuntimeStub(channel).InvokeService(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == f"the sidecar of app id 'app-b' at 127.0.0.1:{port} dropped the call: CANCELLED"
    finally:
        await _stop(a)
        await peer.stop(None)
