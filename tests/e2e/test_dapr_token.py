"""`dapr-api-token`: with DAPR_API_TOKEN set, both APIs refuse calls without the token;
health checks stay open. Also Dapr's Shutdown RPC stopping a real sidecar process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layotto.config import layotto_json
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as lpb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc as lgrpc
from tests.support.sidecar import free_port, layotto_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.proto.runtime.v1 import configuration_pb2, dapr_pb2, dapr_pb2_grpc, state_pb2

TOKEN = "s3cr3t-" + uuid.uuid4().hex
STATE = {"state": {"store": {"type": "in-memory"}}}


def dapr_stub(channel: grpc.aio.Channel | grpc.Channel) -> Any:
    return dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def token_sidecar() -> AsyncIterator[str]:
    port = free_port()
    cfg = layotto_json.load_document(layotto_config(STATE, grpc_port=port), source="<test>")
    cfg.api_token = TOKEN
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await sidecar.stop()


async def test_calls_without_the_right_token_are_refused_on_both_apis() -> None:
    async with token_sidecar() as address, grpc.aio.insecure_channel(address) as channel:
        dapr = dapr_stub(channel)
        layotto = lgrpc.RuntimeStub(channel)
        get_dapr = state_pb2.GetStateRequest(store_name="store", key="k")
        get_layotto = lpb.GetStateRequest(store_name="store", key="k")
        for call, request in ((dapr.GetState, get_dapr), (layotto.GetState, get_layotto)):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await call(request)
            assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert missing.value.details() == "missing api token in request metadata"
            with pytest.raises(grpc.aio.AioRpcError) as wrong:
                await call(request, metadata=(("dapr-api-token", "nope"),))
            assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert wrong.value.details() == "authentication error: api token mismatch"
            await call(request, metadata=(("dapr-api-token", TOKEN),))
        # A refused write changed nothing.
        save = state_pb2.SaveStateRequest(store_name="store")
        save.states.add(key="k", value=b"v")
        with pytest.raises(grpc.aio.AioRpcError):
            await dapr.SaveState(save)
        reply = await dapr.GetState(get_dapr, metadata=(("dapr-api-token", TOKEN),))
        assert reply.data == b""
        # Streaming RPCs are checked too.
        sub = dapr.SubscribeConfiguration(configuration_pb2.SubscribeConfigurationRequest(store_name="x"))
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in sub:
                pass
        assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_is_open_and_unknown_methods_stay_unimplemented() -> None:
    async with token_sidecar() as address, grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())  # no token needed
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        unknown = channel.unary_unary("/nope.Service/Nope")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unknown(b"")
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_shutdown_rpc_stops_the_sidecar_gracefully() -> None:
    folder = Path(tempfile.mkdtemp(prefix="layotto-dapr-"))
    (folder / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.in-memory}\n"
    )
    port, http_port = free_port(), free_port()
    log = folder / "sidecar.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "layotto.cli",
            "start",
            "--resources-path",
            str(folder),
            "--dapr-grpc-port",
            str(port),
            "--dapr-http-port",
            str(http_port),
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "DAPR_API_TOKEN": TOKEN},
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                    break
                except grpc.FutureTimeoutError:
                    assert time.monotonic() < deadline, log.read_text()
            dapr_stub(channel).Shutdown(dapr_pb2.ShutdownRequest(), metadata=(("dapr-api-token", TOKEN),))
        assert proc.wait(20) == 0, log.read_text()
        assert "layotto stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
