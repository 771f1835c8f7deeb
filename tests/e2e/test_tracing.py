"""Tracing: server spans from the caller's trace context (W3C, else SOFA headers, else new),
propagation to invoked apps, peer sidecars and CloudEvents, and the stdout/zipkin exporters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from aiohttp import web
from google.protobuf import any_pb2

from layotto import sidecar as sidecar_module
from layotto.components.pubsub.base import Message, PubSub
from layotto.config import layotto_json
from layotto.errors import ConfigError
from layotto.observability.tracing import Span, current_span, inject, start_span
from layotto.observability.tracing.exporters import EXPORTERS, register_exporter
from layotto.observability.tracing.interceptor import TracingInterceptor
from layotto.observability.tracing.tracer import build
from layotto.runtime.delivery import DeliveryService
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc, runtime_pb2_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from tests.e2e.invoke_apps import grpc_app
from tests.support.sidecar import free_port, layotto_config, running_sidecar

HELLO = {"hellos": {"helloworld": {"type": "helloworld"}}}
SAY_HELLO = "/spec.proto.runtime.v1.Runtime/SayHello"
INVOKE = "/spec.proto.runtime.v1.Runtime/InvokeService"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SOFA_TRACE = "0a0fe8ec1572945282813100118592"
HEX16 = re.compile(r"^[0-9a-f]{16}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class Collector:
    """An exporter keeping spans in memory, registered under a unique name."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.closed = False
        self.arrived = asyncio.Event()

    def export(self, span: Span) -> None:
        self.spans.append(span)
        self.arrived.set()

    async def close(self) -> None:
        self.closed = True

    def only(self, name: str) -> Span:
        found = [s for s in self.spans if s.name == name]
        assert len(found) == 1, self.spans
        return found[0]


@pytest.fixture
def collector() -> Iterator[tuple[str, Collector]]:
    name = f"memory-{uuid.uuid4().hex}"
    sink = Collector()
    register_exporter(name, lambda settings, where: sink)
    try:
        yield name, sink
    finally:
        EXPORTERS.pop(name, None)


def _tracing(exporter: str, **config: Any) -> dict[str, Any]:
    return {
        "enable": True,
        "driver": "SOFATracer",
        "config": {"generator": "mosntracing", "exporter": [exporter], **config},
    }


async def _say_hello(address: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await runtime_pb2_grpc.RuntimeStub(channel).SayHello(
            pb.SayHelloRequest(service_name="helloworld"), metadata=metadata
        )


def _invoke_request(app_id: str, method: str = "echo") -> pb.InvokeServiceRequest:
    return pb.InvokeServiceRequest(
        id=app_id, message=pb.CommonInvokeRequest(method=method, data=any_pb2.Any(value=b"x"))
    )


# ---- server spans ----


async def test_traceparent_continues_the_callers_trace(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with running_sidecar(HELLO, tracing=_tracing(name)) as (_, address):
        before = time.time_ns()
        await _say_hello(address, (("traceparent", f"00-{TRACE}-{PARENT}-01"), ("tracestate", "vendor=1")))
        after = time.time_ns()
    span = sink.only(SAY_HELLO)
    assert span.trace_id == TRACE
    assert span.parent_id == PARENT
    assert HEX16.match(span.span_id) and span.span_id != PARENT
    assert span.code == "OK"
    assert before <= span.start_ns <= span.end_ns <= after
    assert span.tracestate == "vendor=1"
    assert span.traceparent() == f"00-{TRACE}-{span.span_id}-01"


async def test_sofa_headers_keep_the_sofa_trace_id(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with running_sidecar(HELLO, tracing=_tracing(name)) as (_, address):
        await _say_hello(
            address,
            (
                ("rpc_trace_context.sofatraceid", SOFA_TRACE),
                ("rpc_trace_context.sofarpcid", "0.1"),
                ("rpc_trace_context.sofacallerapp", "caller-app"),
            ),
        )
    span = sink.only(SAY_HELLO)
    assert span.trace_id == SOFA_TRACE
    assert span.sofa_rpc_id == "0.1"
    assert span.caller_app == "caller-app"
    assert span.w3c_trace_id == SOFA_TRACE.zfill(32)
    assert span.parent_id == ""


async def test_a_call_without_context_starts_a_trace(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with running_sidecar(HELLO, tracing=_tracing(name)) as (_, address):
        await _say_hello(address)
        await _say_hello(address, (("traceparent", "ff-" + TRACE + "-" + PARENT + "-01"),))  # invalid version
    first, second = sink.spans
    for span in (first, second):
        assert HEX32.match(span.trace_id) and HEX16.match(span.span_id)
        assert span.parent_id == ""
        assert span.trace_id != TRACE
    assert first.trace_id != second.trace_id


async def test_failed_call_records_its_status_code(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with running_sidecar(HELLO, tracing=_tracing(name)) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await runtime_pb2_grpc.RuntimeStub(channel).SayHello(pb.SayHelloRequest(service_name="missing"))
    assert sink.only(SAY_HELLO).code == err.value.code().name != "OK"


# ---- propagation ----


async def test_invoke_carries_the_trace_to_the_app(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with (
        grpc_app("app-t") as (app, port),
        running_sidecar({"app": {"app_id": "app-t", "grpc_callback_port": port}}, tracing=_tracing(name)) as (
            _,
            address,
        ),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await stub.InvokeService(_invoke_request("app-t"), metadata=(("traceparent", f"00-{TRACE}-{PARENT}-01"),))
        await stub.InvokeService(_invoke_request("app-t"))
        await stub.InvokeService(
            _invoke_request("app-t"),
            metadata=(("rpc_trace_context.sofatraceid", SOFA_TRACE), ("rpc_trace_context.sofarpcid", "0.2")),
        )
    traced, fresh, sofa = (dict(call.metadata) for call in app.seen.calls)
    spans = sink.spans
    assert [s.name for s in spans] == [INVOKE] * 3
    # The app's parent is this sidecar's span, not the caller's.
    assert traced["traceparent"] == f"00-{TRACE}-{spans[0].span_id}-01"
    assert fresh["traceparent"] == f"00-{spans[1].trace_id}-{spans[1].span_id}-01"
    assert sofa["rpc_trace_context.sofatraceid"] == SOFA_TRACE
    assert sofa["rpc_trace_context.sofarpcid"] == "0.2.1"
    assert sofa["traceparent"] == f"00-{SOFA_TRACE.zfill(32)}-{spans[2].span_id}-01"


async def test_concurrent_calls_never_see_each_others_span(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with (
        grpc_app("app-c") as (app, port),
        running_sidecar({"app": {"app_id": "app-c", "grpc_callback_port": port}}, tracing=_tracing(name)) as (
            _,
            address,
        ),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        traces = [uuid.uuid4().hex for _ in range(30)]
        await asyncio.gather(
            *(
                stub.InvokeService(_invoke_request("app-c", t), metadata=(("traceparent", f"00-{t}-{PARENT}-01"),))
                for t in traces
            )
        )
    by_span = {s.span_id: s for s in sink.spans}
    assert len(by_span) == 30
    for call in app.seen.calls:
        _, trace, span_id, _ = dict(call.metadata)["traceparent"].split("-")
        assert trace == call.method  # the method names the trace the call came with
        assert by_span[span_id].trace_id == trace


async def test_invoke_through_two_sidecars_keeps_one_trace(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with (
        grpc_app("app-b") as (app, port),
        running_sidecar({"app": {"app_id": "app-b", "grpc_callback_port": port}}, tracing=_tracing(name)) as (
            _,
            address_b,
        ),
        running_sidecar(
            {
                "app": {"app_id": "app-a"},
                "name_resolution": {"table": {"type": "static", "metadata": {"apps": {"app-b": address_b}}}},
            },
            tracing=_tracing(name),
        ) as (_, address_a),
        grpc.aio.insecure_channel(address_a) as channel,
    ):
        await runtime_pb2_grpc.RuntimeStub(channel).InvokeService(
            _invoke_request("app-b"), metadata=(("traceparent", f"00-{TRACE}-{PARENT}-01"),)
        )
    span_b, span_a = sink.spans  # B finishes first: A waits for it
    assert span_a.trace_id == span_b.trace_id == TRACE
    assert span_a.parent_id == PARENT
    assert span_b.parent_id == span_a.span_id
    assert dict(app.seen.calls[0].metadata)["traceparent"] == f"00-{TRACE}-{span_b.span_id}-01"


@contextlib.asynccontextmanager
async def _subscribed(pubsub: PubSub, topic: str) -> AsyncIterator[asyncio.Queue[Message]]:
    received: asyncio.Queue[Message] = asyncio.Queue()

    async def handler(message: Message) -> bool:
        received.put_nowait(message)
        return True

    subscription = await pubsub.subscribe(topic, handler, {})
    try:
        yield received
    finally:
        await subscription.close()


async def test_published_envelope_carries_the_trace(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    topic = f"tracing-{uuid.uuid4().hex}"
    config = {"pub_subs": {"mem": {"type": "in-memory"}}}
    async with (
        running_sidecar(config, tracing=_tracing(name)) as (sidecar, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        component = sidecar.rt.get("pubsub", "mem")
        assert isinstance(component, PubSub)
        async with _subscribed(component, topic) as received:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            await stub.PublishEvent(
                pb.PublishEventRequest(pubsub_name="mem", topic=topic, data=b'{"a":1}', data_content_type="text/plain"),
                metadata=(("traceparent", f"00-{TRACE}-{PARENT}-01"),),
            )
            own = json.dumps({"id": "e1", "source": "me", "type": "t", "specversion": "1.0", "data": 1})
            await stub.PublishEvent(
                pb.PublishEventRequest(
                    pubsub_name="mem",
                    topic=topic,
                    data=own.encode(),
                    data_content_type="application/cloudevents+json",
                ),
            )
            plain = json.loads((await asyncio.wait_for(received.get(), 5)).data)
            cloudevent = json.loads((await asyncio.wait_for(received.get(), 5)).data)
    first, second = sink.spans
    assert plain["traceid"] == plain["traceparent"] == f"00-{TRACE}-{first.span_id}-01"
    assert cloudevent["id"] == "e1"
    assert cloudevent["traceid"] == cloudevent["traceparent"] == f"00-{second.trace_id}-{second.span_id}-01"


class EventApp(appcallback_pb2_grpc.AppCallbackServicer):
    """Subscribes to one topic of pubsub "mem"; answers RETRY to the first event of a trace
    named in `retry_once`, SUCCESS otherwise; keeps each callback's metadata."""

    def __init__(self, topic: str, retry_once: str = "") -> None:
        self.topic = topic
        self.retry_once = retry_once
        self.seen: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def ListTopicSubscriptions(self, request: Any, context: Any) -> cb.ListTopicSubscriptionsResponse:
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[cb.TopicSubscription(pubsub_name="mem", topic=self.topic)]
        )

    async def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> cb.TopicEventResponse:
        metadata = dict(context.invocation_metadata())
        self.seen.put_nowait(metadata)
        if self.retry_once and self.retry_once in metadata.get("traceparent", ""):
            self.retry_once = ""
            return cb.TopicEventResponse(status=cb.TopicEventResponse.RETRY)
        return cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)


@contextlib.asynccontextmanager
async def event_sidecar(app: EventApp, **kwargs: Any) -> AsyncIterator[tuple[Any, runtime_pb2_grpc.RuntimeStub]]:
    """The app served on a free port and a sidecar that has subscribed its topic."""
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(app, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    config = {
        "app": {"app_id": "app-e", "grpc_callback_port": port},
        "pub_subs": {"mem": {"type": "in-memory", "metadata": {"retryBackoff": "0.01"}}},
    }
    try:
        async with running_sidecar(config, **kwargs) as (sidecar, address), grpc.aio.insecure_channel(address) as ch:
            delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
            await asyncio.wait_for(delivery.ready.wait(), 10)
            yield sidecar, runtime_pb2_grpc.RuntimeStub(ch)
    finally:
        await server.stop(None)


async def test_event_delivery_continues_the_publishers_trace(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    topic = f"tracing-{uuid.uuid4().hex}"
    app = EventApp(topic, retry_once=TRACE)
    async with event_sidecar(app, tracing=_tracing(name)) as (_, stub):
        await stub.PublishEvent(
            pb.PublishEventRequest(pubsub_name="mem", topic=topic, data=b"x"),
            metadata=(("traceparent", f"00-{TRACE}-{PARENT}-01"),),
        )
        first = await asyncio.wait_for(app.seen.get(), 10)
        second = await asyncio.wait_for(app.seen.get(), 10)
        async with asyncio.timeout(10):  # the span ends after the app answered
            while len(sink.spans) < 3:
                sink.arrived.clear()
                await sink.arrived.wait()
    publish = sink.only("/spec.proto.runtime.v1.Runtime/PublishEvent")
    retried, delivered = (s for s in sink.spans if s.name == f"pubsub/mem/{topic}")
    for span, seen in ((retried, first), (delivered, second)):
        # One span per callback, each a child of the publishing call's span.
        assert span.kind == "CONSUMER"
        assert span.trace_id == TRACE and span.parent_id == publish.span_id
        assert seen["traceparent"] == f"00-{TRACE}-{span.span_id}-01"
        assert span.attributes is not None and span.attributes["topic"] == topic
    assert retried.code == "RETRY" and not retried.ok
    assert delivered.code == "OK" and retried.span_id != delivered.span_id


async def test_without_tracing_the_app_gets_the_envelopes_traceparent() -> None:
    topic = f"tracing-{uuid.uuid4().hex}"
    app = EventApp(topic)
    given = f"00-{TRACE}-{PARENT}-01"
    async with event_sidecar(app) as (_, stub):
        await stub.PublishEvent(
            pb.PublishEventRequest(pubsub_name="mem", topic=topic, data=b"x"), metadata=(("traceparent", given),)
        )
        await stub.PublishEvent(pb.PublishEventRequest(pubsub_name="mem", topic=topic, data=b"y"))
        traced = await asyncio.wait_for(app.seen.get(), 10)
        untraced = await asyncio.wait_for(app.seen.get(), 10)
    assert traced["traceparent"] == given
    assert "traceparent" not in untraced


async def test_without_tracing_there_is_no_interceptor_and_no_span() -> None:
    for tracing in (None, {"enable": False, "driver": "SOFATracer"}):
        doc = layotto_config(HELLO, grpc_port=free_port(), tracing=tracing)
        cfg = layotto_json.load_document(doc, source="<test>")
        assert build(cfg) is None
        assert not any(isinstance(i, TracingInterceptor) for i in sidecar_module._interceptors(cfg, build(cfg)))
    async with (
        grpc_app("app-u") as (app, port),
        running_sidecar({"app": {"app_id": "app-u", "grpc_callback_port": port}}) as (_, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        given = f"00-{TRACE}-{PARENT}-01"
        await runtime_pb2_grpc.RuntimeStub(channel).InvokeService(
            _invoke_request("app-u"), metadata=(("traceparent", given),)
        )
    # Untouched: the caller's header passes through as any other.
    assert dict(app.seen.calls[0].metadata)["traceparent"] == given
    assert current_span() is None


# ---- exporters ----


async def test_stdout_exporter_writes_one_json_line_per_span(capsys: pytest.CaptureFixture[str]) -> None:
    async with running_sidecar(HELLO, tracing=_tracing("stdout")) as (_, address):
        await _say_hello(address, (("traceparent", f"00-{TRACE}-{PARENT}-01"),))
        await _say_hello(address)
        deadline = time.monotonic() + 5
        lines: list[dict[str, Any]] = []
        out = ""
        while len(lines) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the exporter writes on a later loop iteration
            out += capsys.readouterr().out
            lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"time"')]
    assert len(lines) == 2
    first = lines[0]
    assert first["method"] == SAY_HELLO
    assert first["traceId"] == TRACE
    assert first["parentSpanId"] == PARENT
    assert HEX16.match(first["spanId"])
    assert first["result"] == "0" and first["code"] == "OK"
    assert first["durationUs"] >= 0
    assert lines[1]["traceId"] != TRACE


@contextlib.asynccontextmanager
async def zipkin_collector() -> AsyncIterator[tuple[str, list[list[dict[str, Any]]], asyncio.Event]]:
    posts: list[list[dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def spans(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        posts.append(await request.json())
        arrived.set()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/api/v2/spans", spans)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/api/v2/spans", posts, arrived
    finally:
        await runner.cleanup()


async def _until(posts: list[list[dict[str, Any]]], arrived: asyncio.Event, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        while sum(len(p) for p in posts) < count:
            arrived.clear()
            await arrived.wait()
    return [span for post in posts for span in post]


async def test_zipkin_exporter_posts_batches_of_v2_spans() -> None:
    async with zipkin_collector() as (url, posts, arrived):
        tracing = {
            "enable": True,
            "driver": "Zipkin",
            # upstream's layout: the reporter settings one level down
            "config": {
                "config": {
                    "service_name": "sidecar-z",
                    "reporter_endpoint": url,
                    "recorder_host_post": "127.0.0.1:34904",
                },
                "batch_interval": 0.3,
            },
        }
        async with running_sidecar(HELLO, tracing=tracing) as (_, address):
            async with grpc.aio.insecure_channel(address) as channel:
                stub = runtime_pb2_grpc.RuntimeStub(channel)
                for _ in range(5):
                    await stub.SayHello(
                        pb.SayHelloRequest(service_name="helloworld"),
                        metadata=(("traceparent", f"00-{TRACE}-{PARENT}-01"),),
                    )
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.SayHello(pb.SayHelloRequest(service_name="missing"))
            spans = await _until(posts, arrived, 6)
    assert len(spans) == 6
    assert len(posts) < 6  # batched, not one request per span
    ok = spans[0]
    assert ok["traceId"] == TRACE and ok["parentId"] == PARENT and HEX16.match(ok["id"])
    assert ok["kind"] == "SERVER" and ok["name"] == SAY_HELLO
    assert ok["localEndpoint"] == {"serviceName": "sidecar-z", "ipv4": "127.0.0.1", "port": 34904}
    assert ok["timestamp"] > 1_600_000_000_000_000 and ok["duration"] >= 1
    assert ok["tags"]["grpc.status_code"] == "OK" and "error" not in ok["tags"]
    failed = spans[5]
    assert "parentId" not in failed and HEX32.match(failed["traceId"])
    assert failed["tags"]["error"] == failed["tags"]["grpc.status_code"] != "OK"


async def test_stop_flushes_spans_still_waiting_in_the_exporters(collector: tuple[str, Collector]) -> None:
    name, sink = collector
    async with zipkin_collector() as (url, posts, _):
        # A batch interval far longer than the test: only the stop hook can send these.
        tracing = {"enable": True, "driver": "zipkin", "config": {"reporter_endpoint": url, "batch_interval": 600}}
        tracing["config"]["exporter"] = [name]
        async with running_sidecar(HELLO, tracing=tracing) as (_, address):
            for _ in range(3):
                await _say_hello(address)
            assert posts == []
        assert sum(len(p) for p in posts) == 3
    assert sink.closed


class _Seen(logging.Handler):
    """Sets `event` when a record containing `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.event = asyncio.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self.event.set()


async def test_zipkin_collector_down_never_slows_calls() -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/v2/spans"
    tracing = {"enable": True, "driver": "zipkin", "config": {"reporter_endpoint": dead, "batch_interval": 0.05}}
    seen = _Seen("spans are dropped")
    logger = logging.getLogger("layotto.tracing")
    logger.addHandler(seen)
    try:
        async with running_sidecar(HELLO, tracing=tracing) as (_, address):
            async with grpc.aio.insecure_channel(address) as channel:
                stub = runtime_pb2_grpc.RuntimeStub(channel)
                started = time.perf_counter()
                for _ in range(20):
                    await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))
                assert time.perf_counter() - started < 2
                # The sender's failure is logged, never raised into a call.
                await asyncio.wait_for(seen.event.wait(), 10)
                for _ in range(20):
                    await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))
    finally:
        logger.removeHandler(seen)
    assert seen.count == 1  # once per outage, not per batch


# ---- configuration and context ----


def _cfg(tracing: dict[str, Any]) -> Any:
    return layotto_json.load_document(layotto_config(HELLO, grpc_port=free_port(), tracing=tracing), source="t.json")


def test_config_drivers(caplog: pytest.LogCaptureFixture) -> None:
    from layotto.observability.tracing.exporters import StdoutExporter, ZipkinExporter

    default = build(_cfg({"enable": True}))
    assert default is not None and [type(e) for e in default.exporters] == [StdoutExporter]
    none = build(_cfg({"enable": True, "config": {"exporter": []}}))
    assert none is not None and none.exporters == []
    for driver in ("jaeger", "SkyWalking"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="layotto.tracing"):
            built = build(_cfg({"enable": "true", "driver": driver}))
        assert built is not None and [type(e) for e in built.exporters] == [StdoutExporter]
        assert "spans are written to stdout instead" in caplog.text
    zipkin = build(_cfg({"enable": True, "driver": "zipkin", "config": {"zipkin_url": "http://h:1/api/v2/spans"}}))
    assert zipkin is not None
    (exporter,) = zipkin.exporters
    assert isinstance(exporter, ZipkinExporter) and exporter.endpoint == "http://h:1/api/v2/spans"
    with pytest.raises(ConfigError, match=r"t.json: \$.tracing.driver: unknown tracing driver 'datadog'"):
        build(_cfg({"enable": True, "driver": "datadog"}))
    with pytest.raises(ConfigError, match="unknown exporter 'kafka'"):
        build(_cfg({"enable": True, "config": {"exporter": ["stdout", "kafka"]}}))
    with pytest.raises(ConfigError, match="reporter_endpoint must be an http"):
        build(_cfg({"enable": True, "driver": "zipkin", "config": {"reporter_endpoint": "h:9411"}}))
    with pytest.raises(ConfigError, match="batch_interval must be a positive number"):
        build(_cfg({"enable": True, "driver": "zipkin", "config": {"batch_interval": 0}}))


async def test_sidecar_refuses_to_start_with_an_unknown_driver() -> None:
    with pytest.raises(ConfigError, match="unknown tracing driver"):
        async with running_sidecar(HELLO, tracing={"enable": True, "driver": "nope"}):
            pass


def test_inject_replaces_the_callers_context() -> None:
    headers = [("x-id", "1"), ("traceparent", f"00-{TRACE}-{PARENT}-01"), ("tracestate", "a=1")]
    assert inject(headers) is headers  # no traced call: nothing to do
    span = start_span("m", [("traceparent", f"00-{TRACE}-{PARENT}-00"), ("tracestate", "a=1")], 0)
    assert span.flags == "00"  # the caller's sampling decision is kept

    from layotto.observability.tracing.span import CURRENT

    token = CURRENT.set(span)
    try:
        out = inject(headers)
    finally:
        CURRENT.reset(token)
    assert out == [("x-id", "1"), ("traceparent", f"00-{TRACE}-{span.span_id}-00"), ("tracestate", "a=1")]
    # Malformed or all-zero contexts start a new trace rather than failing the call.
    for bad in ("garbage", f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-{PARENT}-01"):
        assert start_span("m", [("traceparent", bad)], 0).trace_id != TRACE
    # A SOFA id that is not hex still maps to one stable W3C id.
    odd = start_span("m", [("rpc_trace_context.sofatraceid", "trace-xyz")], 0)
    assert odd.trace_id == "trace-xyz" and HEX32.match(odd.w3c_trace_id)
    assert start_span("m", [("rpc_trace_context.sofatraceid", "trace-xyz")], 0).w3c_trace_id == odd.w3c_trace_id
