"""/metrics without any stream filter: conventional names and units, no `_created` series,
the process and platform collectors, and counts that move with the calls served."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from layotto.observability.interceptor import TelemetryInterceptor, method_block
from layotto.observability.tracing.interceptor import TracingInterceptor
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.observability.collectors import grpc_collector
from tests.support.sidecar import free_port, layotto_config, running_sidecar

GRPC_CONFIG = {
    "app": {"app_id": "metrics-app"},
    "hellos": {"helloworld": {"type": "helloworld"}},
    "state": {"mem": {"type": "in-memory"}},
}
RUNTIME = "spec.proto.runtime.v1.Runtime"


async def _scrape(port: int) -> tuple[str, dict[str, Metric]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as reply,
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await reply.text()
    return text, {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict[str, Metric], sample_name: str, **labels: str) -> float:
    family_name = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    family = families.get(family_name)
    if family is None:
        return 0.0
    found = [s.value for s in family.samples if s.name == sample_name and labels.items() <= s.labels.items()]
    return float(sum(found))


def _label_values(families: dict[str, Metric], family: str, label: str) -> set[str]:
    return {s.labels[label] for s in families[family].samples if label in s.labels}


async def _calls(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for _ in range(3):
            await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))
        await stub.SaveState(pb.SaveStateRequest(store_name="mem", states=[pb.StateItem(key="k", value=b"v")]))
        await stub.GetState(pb.GetStateRequest(store_name="mem", key="k"))
        for name in ("nope", "made-up-name"):  # not configured: counted per method, never as a component
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetState(pb.GetStateRequest(store_name=name, key="k"))


async def test_metrics_are_served_without_a_stream_filter() -> None:
    actuator = free_port()
    async with running_sidecar(GRPC_CONFIG, actuator_port=actuator) as (sidecar, address):
        assert sidecar.config.stream_filters == []
        _, before = await _scrape(actuator)
        await _calls(address)
        text, after = await _scrape(actuator)

    def moved(sample: str, **labels: str) -> float:
        return _value(after, sample, **labels) - _value(before, sample, **labels)

    say_hello = {"grpc_service": RUNTIME, "grpc_method": "SayHello", "grpc_type": "unary"}
    assert moved("layotto_grpc_server_started_total", **say_hello) == 3
    assert moved("layotto_grpc_server_handled_total", **say_hello, grpc_code="OK") == 3
    assert moved("layotto_grpc_server_handling_seconds_count", **say_hello) == 3
    assert moved("layotto_grpc_server_handling_seconds_sum", **say_hello) > 0
    get_state = {"grpc_service": RUNTIME, "grpc_method": "GetState"}
    failed = moved("layotto_grpc_server_handled_total", **get_state) - moved(
        "layotto_grpc_server_handled_total", **get_state, grpc_code="OK"
    )
    assert failed == 2
    assert "OK" in _label_values(after, "layotto_grpc_server_handled", "grpc_code")
    # Per building block and component.
    state = {"block": "state", "component": "mem"}
    assert moved("layotto_component_calls_total", **state, operation="SaveState", grpc_code="OK") == 1
    assert moved("layotto_component_calls_total", **state, operation="GetState", grpc_code="OK") == 1
    assert moved("layotto_component_call_seconds_count", **state, operation="GetState") == 1
    assert moved("layotto_component_calls_total", block="hello", component="helloworld", operation="SayHello") == 3
    assert not {"nope", "made-up-name"} & _label_values(after, "layotto_component_calls", "component")

    # Conventions: counters end in _total, durations are histograms in seconds, no _created.
    assert "_created" not in text
    for family in after.values():
        names = {s.name for s in family.samples}
        if family.type == "counter":
            assert names <= {f"{family.name}_total"}, family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_bytes")), family.name
        assert not family.name.endswith(("_time", "_cost")), family.name
    assert after["layotto_grpc_server_handling_seconds"].type == "histogram"
    assert after["layotto_component_call_seconds"].type == "histogram"
    # The process and platform collectors, on the sidecar's own registry.
    for family in (
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert family in after and after[family].samples[0].value > 0, family
    assert "python_info" in after
    assert "python_gc_objects_collected" in after
    (build,) = after["layotto_build_info"].samples
    assert build.value == 1 and build.labels["version"]


async def test_tracing_exporters_count_what_they_send() -> None:
    actuator = free_port()
    async with grpc_collector() as collector:
        otel = {"endpointAddress": collector.endpoint, "isSecure": False}
        tracing = {"samplingRate": "1", "otel": otel}
        async with running_sidecar(GRPC_CONFIG, actuator_port=actuator, tracing=tracing) as (_, address):
            _, before = await _scrape(actuator)
            await _calls(address)
        # After the stop, which flushed the exporter: the registry is the process's, scraped directly.
        from prometheus_client import generate_latest

        from layotto.observability.metrics import registry

        after = {f.name: f for f in text_string_to_metric_families(generate_latest(registry()).decode())}
    sent = _value(after, "layotto_tracing_spans_exported_total", exporter="otlp")
    assert sent - _value(before, "layotto_tracing_spans_exported_total", exporter="otlp") == 7
    assert len(collector.drain()) == 7


def _interceptors(**kwargs: Any) -> Iterator[type]:
    from layotto import sidecar as sidecar_module
    from layotto.config import layotto_json
    from layotto.observability.tracing.tracer import build

    cfg = layotto_json.load_document(layotto_config(GRPC_CONFIG, grpc_port=free_port(), **kwargs), source="<t>")
    return (type(i) for i in sidecar_module._interceptors(cfg, build(cfg)))


def test_one_wrapper_per_call_whatever_is_on() -> None:
    tracing = {"enable": True, "config": {"exporter": []}}
    # An actuator: metrics, with the tracer's spans in the same interceptor.
    assert TelemetryInterceptor in _interceptors(actuator_port=free_port())
    assert TracingInterceptor not in _interceptors(actuator_port=free_port(), tracing=tracing)
    # No actuator, nothing serves /metrics: tracing alone, or nothing.
    assert TracingInterceptor in _interceptors(tracing=tracing)
    assert not {TelemetryInterceptor, TracingInterceptor} & set(_interceptors())


async def test_upstreams_grpc_metric_filter_is_still_accepted_beside() -> None:
    actuator = free_port()
    filters = [{"type": "grpc_metric"}]
    async with running_sidecar(GRPC_CONFIG, actuator_port=actuator, stream_filters=filters) as (_, address):
        await _calls(address)
        _, families = await _scrape(actuator)
    assert _value(families, "grpc_request_total", service=f"/{RUNTIME}/SayHello") >= 3
    assert families["grpc_cost_time_seconds"].type == "histogram"
    assert _value(families, "layotto_grpc_server_handled_total", grpc_method="SayHello") >= 3


def test_method_blocks() -> None:
    dapr = "dapr.proto.runtime.v1.Dapr"
    assert method_block(RUNTIME, "GetState") == "state"
    assert method_block(RUNTIME, "ExecuteStateTransaction") == "state"
    assert method_block(dapr, "GetActorState") == ""
    assert method_block(dapr, "SubscribeConfigurationAlpha1") == "configuration"
    assert method_block(dapr, "TryLockAlpha1") == "lock"
    assert method_block(RUNTIME, "GetNextId") == "sequencer"
    assert method_block(dapr, "BulkPublishEvent") == "pubsub"
    assert method_block(dapr, "InvokeBinding") == "bindings"
    assert method_block(dapr, "GetBulkSecret") == "secretstores"
    assert method_block(dapr, "SubtleEncryptAlpha1") == "cryption"
    assert method_block(RUNTIME, "GetFileMeta") == "file"
    assert method_block(RUNTIME, "InvokeService") == ""
    assert method_block("spec.proto.extension.v1.s3.ObjectStorageService", "PutObject") == "oss"
    assert method_block("grpc.health.v1.Health", "Check") == ""
