"""Isolation and limits: deadlines, traps, memory caps, many calls at once, metrics, tracing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest

from layotto.wasm.abi import WasmResult
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import free_port
from tests.wasm.support import blocks, running


async def test_a_runaway_guest_is_stopped_at_its_deadline_while_everything_else_is_served(tmp_path: Path) -> None:
    async with running(blocks(tmp_path, fn_spin={"timeout_ms": 1000}, fn_a={"instances": 2})) as rt:
        started = time.monotonic()
        spin = asyncio.ensure_future(rt.call("fn_spin", op="spin"))
        async with grpc.aio.insecure_channel(rt.grpc) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            for i in range(10):
                assert await rt.call("fn_a", f"echo {i}".encode()) == (200, f"echo {i}")
                await stub.GetState(pb.GetStateRequest(store_name="state_demo", key="k"))
        assert not spin.done(), "the other calls were answered while the runaway guest ran"
        status, text = await spin
        elapsed = time.monotonic() - started
        assert (status, text) == (504, "function fn_spin did not answer within 1000 ms")
        assert 0.95 < elapsed < 4.0
        # Its instance was replaced: the function serves again.
        assert await rt.call("fn_spin", b"alive") == (200, "alive")


async def test_a_trap_fails_the_call_and_the_instance_is_replaced(tmp_path: Path) -> None:
    async with running(blocks(tmp_path, fn_a={})) as rt:
        status, text = await rt.call("fn_a", op="trap")
        assert status == 500
        assert text == "function fn_a trapped: wasm trap: wasm `unreachable` instruction executed"
        for i in range(3):
            assert await rt.call("fn_a", f"after {i}".encode()) == (200, f"after {i}")
        status, _ = await rt.call("fn_a", op="trap")
        assert status == 500
        assert await rt.call("fn_a", b"again") == (200, "again")


async def test_memory_is_capped_per_function(tmp_path: Path) -> None:
    async with running(blocks(tmp_path, fn_small={"memory_mb": 2}, fn_large={"memory_mb": 2048})) as rt:
        # The guest asks for 1 GiB more.
        assert await rt.call("fn_small", op="grow") == (200, "denied")
        assert await rt.call("fn_large", op="grow") == (200, "granted")
        # A result the host cannot allocate in a capped guest traps it (its malloc fails).
        status, text = await rt.call("fn_small", b"x" * (3 * 1024 * 1024))
        assert status == 500 and "trapped" in text
        assert await rt.call("fn_small", b"fits") == (200, "fits")


async def test_many_concurrent_calls_get_their_own_answers(tmp_path: Path) -> None:
    async with running(blocks(tmp_path, fn_a={"instances": 4}, fn_b={"instances": 2})) as rt:
        echoes = [rt.call("fn_a", f"call {i}".encode()) for i in range(64)]
        invokes = [rt.call("fn_a", f"nested {i}".encode(), op="invoke", target="fn_b") for i in range(64)]
        saves = [rt.call("fn_a", str(i).encode(), op="save", store="state_demo", key=f"k{i}") for i in range(32)]
        results = await asyncio.gather(*echoes, *invokes, *saves)
        assert results[:64] == [(200, f"call {i}") for i in range(64)]
        assert results[64:128] == [(200, f"{WasmResult.OK}:nested {i}") for i in range(64)]
        assert results[128:] == [(200, f"{WasmResult.OK}:")] * 32
        gets = await asyncio.gather(*(rt.call("fn_b", op="get", store="state_demo", key=f"k{i}") for i in range(32)))
        assert gets == [(200, f"{WasmResult.OK}:{i}") for i in range(32)]


async def test_metrics_per_function_on_the_actuator(tmp_path: Path) -> None:
    actuator = free_port()
    async with running(blocks(tmp_path, fn_metrics={}), actuator_port=actuator) as rt:
        assert (await rt.call("fn_metrics", b"1"))[0] == 200
        assert (await rt.call("fn_metrics", op="trap"))[0] == 500
        async with rt.http.get(f"http://127.0.0.1:{actuator}/metrics") as response:
            text = await response.text()
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if "fn_metrics" in line
    }
    assert lines['wasm_function_calls_total{function="fn_metrics"}'] == 2
    assert lines['wasm_function_errors_total{function="fn_metrics",reason="trap"}'] == 1
    assert lines['wasm_function_duration_seconds_count{function="fn_metrics"}'] == 2


async def test_tracing_continues_into_host_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    functions = blocks(tmp_path, fn_a={}, fn_b={})
    tracing = {"enable": True, "driver": "SOFATracer", "config": {"generator": "mosntracing", "exporter": ["stdout"]}}
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with running(functions, tracing=tracing) as rt:
        capsys.readouterr()
        status, _ = await rt.call("fn_a", b"hi", op="invoke", target="fn_b", traceparent=caller)
        assert status == 200
    spans = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            spans[record["method"]] = record
    outer, host, inner = spans["wasm/fn_a"], spans["proxy_invoke_service"], spans["wasm/fn_b"]
    assert {outer["traceId"], host["traceId"], inner["traceId"]} == {"0af7651916cd43dd8448eb211c80319c"}
    assert outer["parentSpanId"] == "b7ad6b7169203331"
    assert host["parentSpanId"] == outer["spanId"]
    assert inner["parentSpanId"] == host["spanId"]
