"""OTLP export against real receivers: a gRPC TraceService collector and an HTTP /v1/traces one,
fed by a sidecar's API calls; sampling as daprd's (parent-based, else ratio by trace id)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import grpc
import pytest

from layotto.observability.metrics import registry
from layotto.observability.tracing.otlp import GrpcSender, HttpSender, OtlpExporter
from layotto.observability.tracing.sampling import ratio_bound
from layotto.observability.tracing.span import Span
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.observability.collectors import Collector, grpc_collector, http_collector
from tests.support.sidecar import free_port, running_sidecar

APP_ID = "otlp-app"
GRPC_CONFIG = {"app": {"app_id": APP_ID}, "hellos": {"helloworld": {"type": "helloworld"}}}
SAY_HELLO = "/spec.proto.runtime.v1.Runtime/SayHello"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SOFA_TRACE_ID = "rpc_trace_context.sofatraceid"
REMOTE_PARENT = 0x300  # OTLP's SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def _tracing(collector: Collector, protocol: str, rate: str = "1", **otel: Any) -> dict[str, Any]:
    return {
        "samplingRate": rate,
        "otel": {"endpointAddress": collector.endpoint, "isSecure": False, "protocol": protocol, **otel},
    }


async def _say_hello(address: str, *metadata: tuple[str, str], service: str = "helloworld") -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await runtime_pb2_grpc.RuntimeStub(channel).SayHello(
            pb.SayHelloRequest(service_name=service), metadata=metadata or None
        )


def _dropped(reason: str) -> float:
    labels = {"exporter": "otlp", "reason": reason}
    return registry().get_sample_value("layotto_tracing_spans_dropped_total", labels) or 0.0


@pytest.fixture
def quick_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches sent 50 ms after their first span, so that spans arrive while the sidecar runs."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_spans_arrive_with_names_parents_attributes_and_the_app_id(protocol: str, quick_batches: None) -> None:
    receiver = grpc_collector() if protocol == "grpc" else http_collector()
    async with receiver as collector:
        async with running_sidecar(GRPC_CONFIG, tracing=_tracing(collector, protocol)) as (_, address):
            before = time.time_ns()
            await _say_hello(address, ("traceparent", f"00-{TRACE}-{PARENT}-01"), ("tracestate", "vendor=1"))
            (got,) = await collector.next_spans()
            with pytest.raises(grpc.aio.AioRpcError):
                await _say_hello(address, service="missing")
            (failed,) = await collector.next_spans()
    span = got.span
    assert span.name == SAY_HELLO
    assert span.trace_id == bytes.fromhex(TRACE)
    assert span.parent_span_id == bytes.fromhex(PARENT)
    assert len(span.span_id) == 8 and span.span_id != bytes.fromhex(PARENT)
    assert span.kind == span.SPAN_KIND_SERVER
    assert span.trace_state == "vendor=1"
    assert span.flags & 0xFF == 1 and span.flags & REMOTE_PARENT == REMOTE_PARENT
    assert before <= span.start_time_unix_nano <= span.end_time_unix_nano <= time.time_ns()
    assert got.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "spec.proto.runtime.v1.Runtime",
        "rpc.method": "SayHello",
        "rpc.grpc.status_code": 0,
    }
    assert span.status.code == span.status.STATUS_CODE_UNSET
    assert got.resource["service.name"] == APP_ID
    assert got.resource["telemetry.sdk.language"] == "python"
    # A call without a trace context is a new trace, with no parent.
    assert failed.span.parent_span_id == b"" and failed.span.trace_id != bytes.fromhex(TRACE)
    assert failed.span.status.code == failed.span.status.STATUS_CODE_ERROR
    assert failed.attributes["rpc.grpc.status_code"] != 0
    if protocol == "http":
        assert collector.headers[0]["Content-Type"] == "application/x-protobuf"


async def test_headers_go_with_every_export(quick_batches: None) -> None:
    async with grpc_collector() as collector:
        tracing = _tracing(collector, "grpc", headers="x-tenant=blue,authorization=Bearer%20t")
        async with running_sidecar(GRPC_CONFIG, tracing=tracing) as (_, address):
            await _say_hello(address)
            await collector.next_spans()
    assert collector.headers[0]["x-tenant"] == "blue"
    assert collector.headers[0]["authorization"] == "Bearer t"


async def test_sampling_rate_0_sends_none_even_for_a_sampled_parent() -> None:
    async with grpc_collector() as collector:
        async with running_sidecar(GRPC_CONFIG, tracing=_tracing(collector, "grpc", rate="0")) as (sidecar, address):
            for _ in range(10):
                await _say_hello(address)
            await _say_hello(address, ("traceparent", f"00-{TRACE}-{PARENT}-01"))
            assert sidecar.tracer is not None
            (exporter,) = sidecar.tracer.exporters
        # Stopping flushed the exporter: anything queued would have been sent by now.
        assert isinstance(exporter, OtlpExporter) and exporter.sent == 0 and exporter.dropped == 0
        assert collector.drain() == []


async def test_sampling_rate_1_sends_all_and_stop_flushes_the_queue() -> None:
    # The default batch interval (5 s) is longer than the test: only the flush at stop sends.
    async with http_collector() as collector:
        async with running_sidecar(GRPC_CONFIG, tracing=_tracing(collector, "http")) as (_, address):
            for _ in range(20):
                await _say_hello(address)
            assert collector.requests.empty()
        spans = collector.drain()
    assert len(spans) == 20
    assert len({s.span.trace_id for s in spans}) == 20


def _sampled_at_half(trace_id: str) -> bool:
    """OpenTelemetry's TraceIDRatioBased rule, written out: last 8 bytes >> 1 below rate * 2**63."""
    return int(trace_id[16:], 16) >> 1 < int(0.5 * (1 << 63))


async def test_sampling_rate_half_is_decided_by_trace_id_and_parents_decide_for_their_children() -> None:
    rng = random.Random(20240501)
    trace_ids = [f"{rng.getrandbits(128):032x}" for _ in range(200)]
    expected = {t for t in trace_ids if _sampled_at_half(t)}
    assert 70 < len(expected) < 130  # the fixed ids are not a lopsided draw
    unsampled_by_ratio = next(t for t in trace_ids if t not in expected)
    sampled_by_ratio = next(iter(expected))
    async with grpc_collector() as collector:
        async with running_sidecar(GRPC_CONFIG, tracing=_tracing(collector, "grpc", rate="0.5")) as (_, address):
            # SOFA headers carry a trace id but no sampled flag: the ratio decides.
            for trace_id in trace_ids:
                await _say_hello(address, (SOFA_TRACE_ID, trace_id))
            # A W3C parent's flag decides, whatever the ratio would say.
            await _say_hello(address, ("traceparent", f"00-{unsampled_by_ratio}-{PARENT}-01"))
            await _say_hello(address, ("traceparent", f"00-{sampled_by_ratio}-{PARENT}-00"))
        spans = collector.drain()
    by_ratio = {s.span.trace_id.hex() for s in spans if not s.span.parent_span_id}
    by_parent = {s.span.trace_id.hex() for s in spans if s.span.parent_span_id}
    assert by_ratio == expected
    assert by_parent == {unsampled_by_ratio}
    assert all(s.attributes["sofa.rpc_id"] == "0" for s in spans if not s.span.parent_span_id)


def test_the_ratio_bound_is_opentelemetrys() -> None:
    assert ratio_bound(0.5) == 1 << 62
    assert ratio_bound(1.0) == 1 << 63
    assert ratio_bound(0.0) == 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_a_collector_that_is_starting_is_retried(protocol: str, quick_batches: None) -> None:
    receiver = grpc_collector() if protocol == "grpc" else http_collector()
    async with receiver as collector:
        collector.fail_next = 2
        async with running_sidecar(GRPC_CONFIG, tracing=_tracing(collector, protocol)) as (_, address):
            await _say_hello(address)
            (got,) = await collector.next_spans()
    assert got.span.name == SAY_HELLO
    assert len(collector.headers) == 3  # two refusals, then the export that was taken


async def test_spans_a_collector_rejects_are_counted(quick_batches: None) -> None:
    before = _dropped("rejected")
    async with grpc_collector() as collector:
        collector.reject_next = 1
        async with running_sidecar(GRPC_CONFIG, tracing=_tracing(collector, "grpc")) as (sidecar, address):
            await _say_hello(address)
            await collector.next_spans()
            assert sidecar.tracer is not None
            (exporter,) = sidecar.tracer.exporters
    assert isinstance(exporter, OtlpExporter) and exporter.sent == 0
    assert _dropped("rejected") == before + 1


class _StuckSender:
    """A collector that takes the first export and never answers it."""

    endpoint = "stuck://"

    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, request: Any, budget: float) -> int:
        self.calls += 1
        self.called.set()
        await self.release.wait()
        return 0

    async def close(self) -> None:
        self.release.set()


def _span(n: int) -> Span:
    span = Span("m", f"{n + 1:032x}", f"{n + 1:016x}", start_ns=time.time_ns())
    span.end_ns, span.code = span.start_ns + 1000, "OK"
    return span


async def test_a_full_queue_drops_spans_and_counts_them_never_blocking() -> None:
    sender = _StuckSender()
    exporter = OtlpExporter(sender, "app", max_queue=4, batch_size=2, batch_interval=0.01, timeout=5)
    before = _dropped("queue_full")
    exporter.export(_span(0))
    exporter.export(_span(1))  # a full batch: the task sends it and waits on the stuck collector
    await asyncio.wait_for(sender.called.wait(), 5)
    started = time.perf_counter()
    for n in range(2, 12):
        exporter.export(_span(n))
    assert time.perf_counter() - started < 0.05  # export() only queues
    assert exporter.dropped == 6 and _dropped("queue_full") == before + 6
    sender.release.set()
    await exporter.close()
    assert exporter.sent == 6  # the batch in flight and the 4 queued


async def test_a_dead_collector_delays_shutdown_by_the_timeout_at_most() -> None:
    before = _dropped("export_failed")
    dead = f"127.0.0.1:{free_port()}"
    for sender in (GrpcSender(dead, secure=False), HttpSender(f"http://{dead}/v1/traces")):
        exporter = OtlpExporter(sender, "app", batch_interval=60, timeout=0.5)
        exporter.export(_span(0))
        started = time.perf_counter()
        await exporter.close()
        assert time.perf_counter() - started < 2
        assert exporter.sent == 0 and exporter.dropped == 1
    assert _dropped("export_failed") == before + 2
