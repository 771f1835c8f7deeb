"""Starting, refusing bad configs, health, and draining in-flight calls on shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto.components.base import ComponentContext, Metadata
from layotto.components.state.base import DeleteRequest, GetRequest, GetResponse, SetRequest, StateStore
from layotto.runtime.registry import ComponentRegistry
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import SidecarProcess, free_port, layotto_config, running_sidecar


def _start(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "layotto.cli", "start", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "layotto.cli", "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip()


def test_unknown_component_type_fails_at_start(tmp_path: Path) -> None:
    result = _start(layotto_config({"state": {"s": {"type": "nope"}}}, grpc_port=free_port()), tmp_path)
    assert result.returncode != 0
    assert "unknown state component type 'nope'" in result.stderr
    assert "grpc_config.state.s" in result.stderr
    assert str(tmp_path / "config.json") in result.stderr


def test_malformed_json_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{ not json")
    result = subprocess.run(
        [sys.executable, "-m", "layotto.cli", "start", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "malformed JSON at line 1" in result.stderr and str(path) in result.stderr


def test_missing_required_metadata_fails_at_start(tmp_path: Path) -> None:
    result = _start(
        layotto_config({"state": {"s": {"type": "redis", "metadata": {}}}}, grpc_port=free_port()), tmp_path
    )
    assert result.returncode != 0
    assert "redis store error: missing host address" in result.stderr
    assert "grpc_config.state.s" in result.stderr


def test_port_in_use_fails_at_start(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = _start(layotto_config({"hellos": {"h": {"type": "helloworld"}}}, grpc_port=port), tmp_path)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def _http_get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_actuator_health_and_info_and_sigterm() -> None:
    proc = SidecarProcess(
        {"hellos": {"helloworld": {"type": "helloworld"}}, "state": {"mem": {"type": "in-memory"}}}
    ).start()
    try:
        base = f"http://127.0.0.1:{proc.actuator_port}/actuator"
        status, body = _http_get(f"{base}/health/liveness")
        assert status == 200 and body["status"] == "UP"
        assert body["components"]["runtime_startup"] == {"status": "UP", "details": {"reason": ""}}
        status, body = _http_get(f"{base}/health/readiness")
        assert status == 200 and body["components"]["mem"]["status"] == "UP"
        status, body = _http_get(f"{base}/info")
        assert status == 200 and body["app"]["name"] == "Layotto"
        status, _ = _http_get(f"{base}/health/unknown")
        assert status == 500
    finally:
        code = proc.terminate()
    assert code == 0, proc.log()
    assert "layotto stopped" in proc.log()


class _SlowStore(StateStore):
    """Holds every get until released, to observe shutdown while a call is in flight."""

    instances: list[_SlowStore] = []

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = False
        self.closed_while_busy = False
        self.busy = 0
        self.keys: list[str] = []
        _SlowStore.instances.append(self)

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)

    async def get(self, request: GetRequest) -> GetResponse | None:
        self.keys.append(request.key)
        self.busy += 1
        self.entered.set()
        await self.release.wait()
        self.busy -= 1
        return GetResponse(b"done", "1")

    async def set(self, request: SetRequest) -> None:
        pass

    async def delete(self, request: DeleteRequest) -> None:
        pass

    async def close(self) -> None:
        self.closed_while_busy = self.busy > 0
        self.closed = True


async def test_shutdown_drains_in_flight_calls_before_closing_components() -> None:
    registry = ComponentRegistry({("state", "test-slow"): _SlowStore})
    async with running_sidecar({"state": {"slow": {"type": "test-slow"}}}, registry) as (sidecar, address):
        store = _SlowStore.instances[-1]
        async with grpc.aio.insecure_channel(address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            in_flight = asyncio.ensure_future(stub.GetState(pb.GetStateRequest(store_name="slow", key="k")))
            await store.entered.wait()
            # The listener keeps taking calls while probes turn and streams end (drain), and
            # stops at server.stop: the next call is made once that has begun, however slowly
            # a loaded machine gets there.
            listener_stopping = asyncio.Event()
            server_stop = sidecar.server.stop

            async def observed_stop(grace: float | None) -> None:
                listener_stopping.set()
                await server_stop(grace)

            sidecar.server.stop = observed_stop  # type: ignore[method-assign]
            stopping = asyncio.ensure_future(sidecar.stop())
            await listener_stopping.wait()
            # New calls are refused once shutdown began; the one in flight is not cut off.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetState(pb.GetStateRequest(store_name="slow", key="k2"), timeout=5)
            # grpc answers UNAVAILABLE, or CANCELLED when the call races the listener's close.
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            assert not store.closed
            store.release.set()
            reply = await in_flight
            assert reply.data == b"done"
            await stopping
        assert store.closed and not store.closed_while_busy
        assert store.keys == ["k"], "a call made after shutdown began must not reach the component"
