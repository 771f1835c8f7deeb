"""Stream filters: grpc_metric counts calls per method; flowControlFilter limits QPS."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import free_port, running_sidecar

HELLO = {"hellos": {"helloworld": {"type": "helloworld"}}}
SAY_HELLO = "/spec.proto.runtime.v1.Runtime/SayHello"


async def test_flow_control_limits_a_method_and_leaves_others_alone() -> None:
    rule = {"resource": SAY_HELLO, "grade": 1, "threshold": 5}
    filters = [
        {"type": "flowControlFilter", "config": {"global_switch": True, "limit_key_type": "PATH", "rules": [rule]}}
    ]
    async with running_sidecar(HELLO, stream_filters=filters) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            codes = []
            for _ in range(20):
                try:
                    await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
                    assert exc.details() == "current request is limited"
            assert codes.count(grpc.StatusCode.OK) in range(5, 8)
            assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 12
            # A method without a rule is not limited.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetState(pb.GetStateRequest(store_name="x", key="k"))
            assert err.value.code() != grpc.StatusCode.RESOURCE_EXHAUSTED


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


async def test_grpc_metric_counts_per_method() -> None:
    actuator = free_port()
    async with running_sidecar(HELLO, stream_filters=[{"type": "grpc_metric"}], actuator_port=actuator) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            for _ in range(3):
                await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.SayHello(pb.SayHelloRequest(service_name="missing"))
        body = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{actuator}/metrics")
    lines = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines() if line and not line.startswith("#")
    }
    label = f'{{service="{SAY_HELLO}"}}'
    assert lines[f"grpc_request_total{label}"] >= 4
    assert lines[f"grpc_response_fail_total{label}"] >= 1
    assert lines[f"grpc_response_succ_total{label}"] >= 3
    # Upstream's cost histogram, with its unit in the name.
    assert lines[f"grpc_cost_time_seconds_count{label}"] >= 4
    assert not any(name.startswith(("grpc_cost_time_bucket", "grpc_cost_time_count")) for name in lines)
    assert not any(name.endswith("_created") or "_created{" in name for name in lines)
