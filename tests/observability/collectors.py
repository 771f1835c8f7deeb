"""Real OTLP receivers for the tests: a gRPC collector (opentelemetry-proto's TraceService) and
an HTTP one (POST /v1/traces), each putting what it receives on a queue to await."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.sidecar import free_port


@dataclass
class Received:
    """One span as a collector got it, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def attributes(self) -> dict[str, Any]:
        return {kv.key: _value(kv.value) for kv in self.span.attributes}


def _value(value: AnyValue) -> Any:
    return getattr(value, str(value.WhichOneof("value")))


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Received]:
    found = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            found.extend(Received(span, resource) for span in scope_spans.spans)
    return found


@dataclass
class Collector:
    """What a receiver got: each export request on `requests`, as it arrives."""

    endpoint: str
    requests: asyncio.Queue[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=asyncio.Queue)
    #: Calls to answer with a retryable failure (UNAVAILABLE, HTTP 503) before accepting.
    fail_next: int = 0
    #: Spans to report back as rejected (OTLP's partial success), once.
    reject_next: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)

    async def next_spans(self, within: float = 10.0) -> list[Received]:
        """The spans of the next export request, awaited for `within` seconds at most."""
        return spans_of(await asyncio.wait_for(self.requests.get(), within))

    def drain(self) -> list[Received]:
        """Every span received so far (the sidecar has flushed when it stopped)."""
        found: list[Received] = []
        while not self.requests.empty():
            found += spans_of(self.requests.get_nowait())
        return found

    def answer(self) -> trace_service_pb2.ExportTraceServiceResponse:
        reply = trace_service_pb2.ExportTraceServiceResponse()
        if self.reject_next:
            reply.partial_success.rejected_spans = self.reject_next
            reply.partial_success.error_message = "rejected by the test"
            self.reject_next = 0
        return reply


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        collector = self.collector
        collector.headers.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        if collector.fail_next:
            collector.fail_next -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "collector starting")
        collector.requests.put_nowait(request)
        return collector.answer()


@contextlib.asynccontextmanager
async def grpc_collector() -> AsyncIterator[Collector]:
    """An OTLP/gRPC collector on 127.0.0.1; its endpoint is "127.0.0.1:port"."""
    port = free_port()
    collector = Collector(f"127.0.0.1:{port}")
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(collector), server)
    server.add_insecure_port(collector.endpoint)
    await server.start()
    try:
        yield collector
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def http_collector() -> AsyncIterator[Collector]:
    """An OTLP/HTTP receiver of application/x-protobuf at /v1/traces; endpoint "127.0.0.1:port"."""
    port = free_port()
    collector = Collector(f"127.0.0.1:{port}")

    async def traces(request: web.Request) -> web.Response:
        collector.headers.append(dict(request.headers))
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text=f"not protobuf: {request.content_type}")
        if collector.fail_next:
            collector.fail_next -= 1
            return web.Response(status=503, headers={"Retry-After": "0"})
        body = trace_service_pb2.ExportTraceServiceRequest.FromString(await request.read())
        collector.requests.put_nowait(body)
        return web.Response(body=collector.answer().SerializeToString(), content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield collector
    finally:
        await runner.cleanup()
