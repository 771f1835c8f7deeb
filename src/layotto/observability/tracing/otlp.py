"""The `otel` exporter: spans sent to an OpenTelemetry collector over OTLP, as daprd sends them,
by gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`) or HTTP/protobuf
(`POST /v1/traces`). The messages are opentelemetry-proto's; the SDK is not needed.

As OpenTelemetry's BatchSpanProcessor: `export()` only queues (at most `max_queue` spans; past
that a span is dropped and counted, never waited for), and a background task sends batches of
at most `batch_size`, `batch_interval` after the first span of a batch or as soon as a batch is
full. The task runs only while spans wait, and `close()` sends what is left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, SpanFlags, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from layotto import __version__
from layotto.config.tracing import otlp_headers
from layotto.errors import ConfigError
from layotto.observability import metrics
from layotto.observability.tracing.exporters import BatchingExporter
from layotto.observability.tracing.span import Span

if TYPE_CHECKING:  # aiohttp costs ~10 MB of RSS: imported when an HTTP exporter first sends
    import aiohttp

log = logging.getLogger("layotto.tracing")

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACES_PATH = "/v1/traces"
DEFAULT_GRPC_PORT = 4317
DEFAULT_HTTP_PORT = 4318
#: daprd's `otel.timeout` default, in ms.
DEFAULT_TIMEOUT_MS = 10_000
#: OpenTelemetry's BatchSpanProcessor defaults; its OTEL_BSP_* variables change them.
DEFAULT_MAX_QUEUE = 2048
DEFAULT_BATCH_SIZE = 512
DEFAULT_BATCH_INTERVAL_MS = 5000

#: What OTLP's spec says a client retries (with backoff); any other failure drops the batch.
_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

_KINDS = {
    "SERVER": OtlpSpan.SPAN_KIND_SERVER,
    "CLIENT": OtlpSpan.SPAN_KIND_CLIENT,
    "CONSUMER": OtlpSpan.SPAN_KIND_CONSUMER,
    "PRODUCER": OtlpSpan.SPAN_KIND_PRODUCER,
}
#: The spans whose parent, when they have one, is in another process (the caller's metadata,
#: the event's envelope); a CLIENT span's parent is this sidecar's own span.
_REMOTE_PARENT_KINDS = frozenset({"SERVER", "CONSUMER"})
_GRPC_CODES = {code.name: int(code.value[0]) for code in grpc.StatusCode}
_HAS_IS_REMOTE = int(SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
_IS_REMOTE = int(SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)


def _text(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def otlp_span(span: Span) -> OtlpSpan:
    """A span in OTLP's model, with OpenTelemetry's RPC attributes for a gRPC call's span."""
    attributes: list[KeyValue] = []
    name = span.name
    code = span.code
    grpc_code = _GRPC_CODES.get(code)
    if name.startswith("/") and name.count("/") == 2:  # a gRPC method path: /package.Service/Method
        service, _, method = name[1:].partition("/")
        attributes += [_text("rpc.system", "grpc"), _text("rpc.service", service), _text("rpc.method", method)]
        if grpc_code is not None:
            attributes.append(KeyValue(key="rpc.grpc.status_code", value=AnyValue(int_value=grpc_code)))
    if grpc_code is None and code:  # an event's outcome (RETRY, DROP), a function's failure
        attributes.append(_text("layotto.outcome", code))
    if span.trace_id != span.w3c_trace_id:
        attributes.append(_text("sofa.trace_id", span.trace_id))
    if span.sofa_rpc_id:
        attributes.append(_text("sofa.rpc_id", span.sofa_rpc_id))
    if span.caller_app:
        attributes.append(_text("caller.app", span.caller_app))
    if span.attributes:
        attributes += [_text(key, value) for key, value in span.attributes.items()]
    flags = int(span.flags, 16) | _HAS_IS_REMOTE
    if span.parent_id and span.kind in _REMOTE_PARENT_KINDS:
        flags |= _IS_REMOTE
    # daprd marks every failed call as an error, with its message; OK calls are left unset.
    status = Status() if code == "OK" or not code else Status(code=Status.STATUS_CODE_ERROR, message=code)
    return OtlpSpan(
        trace_id=bytes.fromhex(span.w3c_trace_id),
        span_id=bytes.fromhex(span.span_id),
        parent_span_id=bytes.fromhex(span.parent_id) if span.parent_id else b"",
        trace_state=span.tracestate,
        flags=flags,
        name=name,
        kind=_KINDS.get(span.kind, OtlpSpan.SPAN_KIND_INTERNAL),
        start_time_unix_nano=span.start_ns,
        end_time_unix_nano=max(span.end_ns, span.start_ns),
        attributes=attributes,
        status=status,
    )


def resource(service_name: str) -> Resource:
    """The sidecar as OpenTelemetry's resource: its app id is the service, as daprd's is."""
    return Resource(
        attributes=[
            _text("service.name", service_name),
            _text("telemetry.sdk.name", "layotto"),
            _text("telemetry.sdk.language", "python"),
            _text("telemetry.sdk.version", __version__),
        ]
    )


_SCOPE = InstrumentationScope(name="layotto", version=__version__)


def export_request(spans: Sequence[Span], of: Resource) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=of, scope_spans=[ScopeSpans(scope=_SCOPE, spans=[otlp_span(s) for s in spans])])
        ]
    )


class ExportError(Exception):
    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Sender(Protocol):
    #: Where spans go, for log lines.
    endpoint: str

    async def send(self, request: ExportTraceServiceRequest, budget: float) -> int:
        """Export one request within `budget` seconds; the count of spans the collector
        rejected. ExportError on failure."""

    async def close(self) -> None: ...


class GrpcSender:
    """TraceService/Export on one channel, opened on first use (in the loop that sends)."""

    def __init__(self, target: str, *, secure: bool, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.target = target
        self.secure = secure
        self.endpoint = f"{'https' if secure else 'http'}://{target}"
        self.metadata = tuple(headers) or None
        self._channel: grpc.aio.Channel | None = None
        self._export: Any = None

    async def send(self, request: ExportTraceServiceRequest, budget: float) -> int:
        if self._channel is None:
            self._channel = (
                grpc.aio.secure_channel(self.target, grpc.ssl_channel_credentials())
                if self.secure
                else grpc.aio.insecure_channel(self.target)
            )
            self._export = self._channel.unary_unary(
                EXPORT_METHOD,
                request_serializer=ExportTraceServiceRequest.SerializeToString,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
        try:
            reply: ExportTraceServiceResponse = await self._export(request, timeout=budget, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise ExportError(f"{exc.code().name}: {exc.details()}", exc.code() in _RETRYABLE_CODES) from None
        return int(reply.partial_success.rejected_spans)

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close(None)


class HttpSender:
    """POST /v1/traces as application/x-protobuf, on one aiohttp session opened on first use."""

    def __init__(self, url: str, *, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.endpoint = url
        self.headers = {**dict(headers), "Content-Type": "application/x-protobuf"}
        self._session: aiohttp.ClientSession | None = None

    async def send(self, request: ExportTraceServiceRequest, budget: float) -> int:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self.endpoint,
                data=request.SerializeToString(),
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=budget),
            ) as reply:
                body = await reply.read()
                if 200 <= reply.status < 300:
                    try:
                        return int(ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans)
                    except Exception:  # a collector that answers 200 with no protobuf took them all
                        return 0
                retry_after = reply.headers.get("Retry-After", "")
                raise ExportError(
                    f"HTTP {reply.status} {body[:200].decode(errors='replace')}".strip(),
                    reply.status in _RETRYABLE_STATUSES,
                    float(retry_after) if retry_after.isdigit() else None,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ExportError(str(exc) or type(exc).__name__, True) from None

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class OtlpExporter(BatchingExporter):
    """Batches spans to a collector through a `Sender` (gRPC or HTTP); a full queue drops the
    new span, as OpenTelemetry's processor does."""

    label = "otlp"

    def __init__(
        self,
        sender: Sender,
        service_name: str,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_interval: float = DEFAULT_BATCH_INTERVAL_MS / 1000,
        timeout: float = DEFAULT_TIMEOUT_MS / 1000,
    ) -> None:
        super().__init__(batch_size, batch_interval, max_queue)
        self.sender = sender
        self.endpoint = sender.endpoint
        self.resource = resource(service_name)
        self.timeout = timeout
        self._rejected = metrics.span_counters()[1].labels(self.label, "rejected")

    async def _send_all(self) -> None:
        for batch in self._batches():
            await self._send(batch)

    async def _send(self, batch: list[Span]) -> None:
        request = export_request(batch, self.resource)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        backoff = 0.1
        while True:
            try:
                rejected = await self.sender.send(request, max(deadline - loop.time(), 0.001))
                break
            except ExportError as exc:
                delay = exc.retry_after if exc.retry_after is not None else backoff * random.uniform(0.5, 1.5)
                if exc.retryable and not self._closing and loop.time() + delay < deadline:
                    await asyncio.sleep(delay)
                    backoff = min(backoff * 2, 5.0)
                    continue
                self._lost(len(batch), self.endpoint, exc)
                return
        self._answers(self.endpoint)
        if rejected:
            self.dropped += rejected
            self._rejected.inc(rejected)
        self._sent(len(batch) - rejected)

    async def _closed(self) -> None:
        await self.sender.close()


def _host_port(netloc: str, default_port: int, endpoint: str, where: str) -> str:
    host = netloc.rpartition("@")[2]
    if not host or host.startswith(":"):
        raise ConfigError(f'endpointAddress must be "host:port" or a URL, got {endpoint!r}', where)
    _, colon, port = host.rpartition(":")
    if host.endswith("]") or not colon:  # no port, or an IPv6 literal without one
        return f"{host}:{default_port}"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"endpointAddress has a bad port: {endpoint!r}", where)
    return host


def grpc_target(endpoint: str, secure: bool, where: str) -> tuple[str, bool]:
    """daprd's `endpointAddress` ("host:port", or a URL whose scheme says whether TLS is used)
    as a gRPC target and whether it is secure."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"endpointAddress must be host:port or an http(s) URL, got {endpoint!r}", where)
        return _host_port(parts.netloc, DEFAULT_GRPC_PORT, endpoint, where), parts.scheme == "https"
    return _host_port(endpoint.split("/", 1)[0], DEFAULT_GRPC_PORT, endpoint, where), secure


def http_url(endpoint: str, secure: bool, where: str) -> str:
    """The URL spans are posted to: a URL as given (with /v1/traces when it has no path), or
    "host:port" with the scheme `isSecure` says, as daprd's HTTP exporter builds it."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"endpointAddress must be host:port or an http(s) URL, got {endpoint!r}", where)
        _host_port(parts.netloc, DEFAULT_HTTP_PORT, endpoint, where)
        return endpoint if parts.path not in ("", "/") else f"{parts.scheme}://{parts.netloc}{TRACES_PATH}"
    host, slash, path = endpoint.partition("/")
    target = _host_port(host, DEFAULT_HTTP_PORT, endpoint, where)
    return f"{'https' if secure else 'http'}://{target}{'/' + path if slash and path else TRACES_PATH}"


def _env_number(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) <= 0:
        raise ConfigError(f"must be a positive whole number, got {value!r}", name)
    return int(value)


def otlp_from_config(otel: Mapping[str, Any], service_name: str, where: str) -> OtlpExporter:
    """daprd's `otel` settings; the batching is OpenTelemetry's, with its OTEL_BSP_* variables."""
    endpoint = str(otel.get("endpointAddress") or "").strip()
    if not endpoint:
        raise ConfigError("endpointAddress is missing", where)
    secure = otel.get("isSecure", True) is not False  # daprd's default: TLS
    protocol = str(otel.get("protocol") or "grpc").lower()
    try:
        headers = otlp_headers(str(otel.get("headers") or ""))
    except ValueError as exc:
        raise ConfigError(str(exc), f"{where}.headers") from None
    timeout_ms = otel.get("timeout", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ConfigError(f"timeout must be a positive number of milliseconds, got {timeout_ms!r}", f"{where}.timeout")
    sender: Sender
    if protocol == "grpc":
        target, secure = grpc_target(endpoint, secure, f"{where}.endpointAddress")
        sender = GrpcSender(target, secure=secure, headers=headers)
    elif protocol in ("http", "http/protobuf"):
        sender = HttpSender(http_url(endpoint, secure, f"{where}.endpointAddress"), headers=headers)
    else:
        raise ConfigError(f"protocol must be grpc or http, got {protocol!r}", f"{where}.protocol")
    max_queue = _env_number("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE)
    return OtlpExporter(
        sender,
        service_name,
        max_queue=max_queue,
        batch_size=_env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BATCH_SIZE),
        batch_interval=_env_number("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_BATCH_INTERVAL_MS) / 1000,
        timeout=timeout_ms / 1000,
    )
