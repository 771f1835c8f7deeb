"""Client plumbing of the Python SDK: addresses, deadlines, headers, message size, errors.

A stand-in Runtime server records what arrives and can hold a call, so deadlines are
observed deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from layotto_sdk import AsyncClient, Client, LayottoError

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from tests.support.sidecar import free_port


class FakeRuntime:
    """Answers GetState after `release` is set; SaveState at once; records headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()

    async def get_state(self, request: pb.GetStateRequest, context: Any) -> pb.GetStateResponse:
        self.headers.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        self.arrived.set()
        await self.release.wait()
        return pb.GetStateResponse(data=b"late", etag="1")

    async def save_state(self, request: pb.SaveStateRequest, context: Any) -> empty_pb2.Empty:
        self.headers.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no writes for " + request.states[0].key)
        raise AssertionError


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRuntime, str]]:
    runtime = FakeRuntime()
    handlers = {
        "GetState": grpc.unary_unary_rpc_method_handler(
            runtime.get_state,
            request_deserializer=pb.GetStateRequest.FromString,
            response_serializer=pb.GetStateResponse.SerializeToString,
        ),
        "SaveState": grpc.unary_unary_rpc_method_handler(
            runtime.save_state,
            request_deserializer=pb.SaveStateRequest.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("spec.proto.runtime.v1.Runtime", handlers),))
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    try:
        yield runtime, f"127.0.0.1:{port}"
    finally:
        runtime.release.set()
        await server.stop(None)


async def test_deadlines_per_call_and_per_client(fake: tuple[FakeRuntime, str]) -> None:
    runtime, address = fake
    async with AsyncClient(address, timeout=0.2) as client:
        with pytest.raises(LayottoError) as info:
            await client.get_state("s", "k")
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(LayottoError) as info:
            await client.get_state("s", "k", timeout=0.1)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # timeout=None lifts the client's deadline for this call.
        runtime.arrived.clear()
        pending = asyncio.ensure_future(client.get_state("s", "k", timeout=None))
        await runtime.arrived.wait()
        # Well past the client's deadline, the call is still waiting for its answer.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pending), 0.4)
        runtime.release.set()
        state = await pending
        assert state is not None and state.data == b"late"


async def test_headers_and_error_details(fake: tuple[FakeRuntime, str]) -> None:
    runtime, address = fake
    runtime.release.set()
    async with AsyncClient(address, headers={"X-Tenant": "acme"}) as client:
        await client.get_state("s", "k", headers=[("x-request-id", "r1")])
        with pytest.raises(LayottoError) as info:
            await client.save_state("s", "key-1", b"v", headers={"x-request-id": "r2"})
    assert (info.value.code, info.value.message) == (grpc.StatusCode.PERMISSION_DENIED, "no writes for key-1")
    assert isinstance(info.value, Exception) and info.value.details == "no writes for key-1"
    assert [(h["x-tenant"], h["x-request-id"]) for h in runtime.headers] == [("acme", "r1"), ("acme", "r2")]


async def test_sync_client_headers_deadline_and_size_limit(fake: tuple[FakeRuntime, str]) -> None:
    runtime, address = fake

    def scenario() -> None:
        with Client(address, timeout=0.2, headers={"x-tenant": "sync"}, max_message_length=1024) as client:
            with pytest.raises(LayottoError) as info:
                client.get_state("s", "k")
            assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(LayottoError) as info:
                client.save_state("s", "big", b"x" * 4096)
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(LayottoError) as info:
                client.save_state("s", "small", b"x")
            assert info.value.code == grpc.StatusCode.PERMISSION_DENIED

    await asyncio.to_thread(scenario)
    assert [h["x-tenant"] for h in runtime.headers] == ["sync", "sync"]


async def test_unreachable_sidecar() -> None:
    address = f"127.0.0.1:{free_port()}"
    async with AsyncClient(address) as client:
        with pytest.raises(LayottoError) as info:
            await client.wait_ready(0.2)
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(LayottoError) as info:
            await client.get_state("s", "k", timeout=2)
        assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_address_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAYOTTO_ADDRESS", "runtime_GRPC_HOST", "runtime_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    with Client() as c:
        assert c.address == "127.0.0.1:34904"
    monkeypatch.setenv("runtime_GRPC_PORT", "4000")
    monkeypatch.setenv("runtime_GRPC_HOST", "10.0.0.1")
    assert AsyncClient().address == "10.0.0.1:4000"
    monkeypatch.setenv("LAYOTTO_ADDRESS", "unix:/tmp/layotto.sock")
    assert AsyncClient().address == "unix:/tmp/layotto.sock"
    assert AsyncClient("h:1").address == "h:1"
    monkeypatch.delenv("LAYOTTO_ADDRESS")
    monkeypatch.setenv("runtime_GRPC_HOST", "unix:///tmp/x.sock")
    assert AsyncClient().address == "unix:///tmp/x.sock"
