"""Where finished spans go: `stdout` (one JSON line per span, upstream's default exporter) and
`zipkin` (Zipkin JSON v2 posted in batches by a background task); OTLP's is in `otlp.py`.

Exporting runs on the event loop at the end of every traced call, so `export()` only queues:
writing and posting happen later, batched, and never make a call wait.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from layotto.errors import ConfigError
from layotto.observability import metrics
from layotto.observability.tracing.span import Span

if TYPE_CHECKING:  # aiohttp costs ~10 MB of RSS: imported when a zipkin exporter first sends
    import aiohttp

log = logging.getLogger("layotto.tracing")


class Exporter(Protocol):
    def export(self, span: Span) -> None:
        """Take a finished span; must not block or raise."""

    async def close(self) -> None:
        """Hand over whatever is still queued (called when the sidecar stops)."""


# One encoder: json.dumps with non-default separators builds a new encoder on every call.
_JSON = json.JSONEncoder(separators=(",", ":"))
_second: list[Any] = [-1, ""]  # the last second formatted, reused by every span within it


def _iso(ns: int) -> str:
    """RFC 3339 UTC with microseconds."""
    seconds, rest = divmod(ns, 1_000_000_000)
    if _second[0] != seconds:
        _second[0], _second[1] = seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{_second[1]}.{rest // 1000:06d}Z"


def span_record(span: Span) -> dict[str, Any]:
    """The stdout form of a span: upstream's stdout fields (AppName, Method, TraceId, SpanId,
    ParentSpanId, start and end, processing time, result "0"/"1"), as JSON keys."""
    record: dict[str, Any] = {
        "time": _iso(span.start_ns),
        "endTime": _iso(span.end_ns),
        "appName": span.caller_app,
        "method": span.name,
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "parentSpanId": span.parent_id,
        "durationUs": span.duration_us,
        "result": "0" if span.ok else "1",
        "code": span.code,
    }
    if span.sofa_rpc_id:
        record["sofaRpcId"] = span.sofa_rpc_id
    if span.attributes:
        record["attributes"] = span.attributes
    return record


class StdoutExporter:
    """One JSON line per span on standard output. Lines are written together, at most
    `flush_interval` after the first of them (or as soon as `batch_lines` wait): gRPC serves
    about one call per loop iteration, so a write per span would cost a syscall per call."""

    def __init__(
        self, stream: Callable[[], Any] | None = None, *, flush_interval: float = 0.05, batch_lines: int = 256
    ) -> None:
        # Looked up at write time, so a replaced sys.stdout (pytest's capture) is honoured.
        self._stream = stream or (lambda: sys.stdout)
        self.flush_interval = flush_interval
        self.batch_lines = batch_lines
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def export(self, span: Span) -> None:
        lines = self._lines
        lines.append(_JSON.encode(span_record(span)))
        if len(lines) >= self.batch_lines:
            self._flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self._flush)
            except RuntimeError:
                self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._lines = self._lines, []
        if not lines:
            return
        try:
            stream = self._stream()
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # a closed or broken stdout must not fail calls
            log.debug("cannot write spans to stdout: %s", exc)

    async def close(self) -> None:
        self._flush()


DEFAULT_ZIPKIN_ENDPOINT = "http://127.0.0.1:9411/api/v2/spans"
DEFAULT_SERVICE_NAME = "layotto"


def _endpoint(service_name: str, host_port: str) -> dict[str, Any]:
    """Zipkin's localEndpoint from upstream's `recorder_host_post` ("host:port")."""
    endpoint: dict[str, Any] = {"serviceName": service_name}
    if not host_port:
        return endpoint
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        endpoint["ipv4" if address.version == 4 else "ipv6"] = str(address)
    if port.isdigit():
        endpoint["port"] = int(port)
    return endpoint


def zipkin_span(span: Span, local_endpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A span in Zipkin's JSON v2 model (a SERVER span of this sidecar)."""
    tags: dict[str, str] = {"rpc.system": "grpc", "grpc.status_code": span.code}
    if not span.ok:
        tags["error"] = span.code
    if span.trace_id != span.w3c_trace_id:
        tags["sofa.trace_id"] = span.trace_id
    if span.sofa_rpc_id:
        tags["sofa.rpc_id"] = span.sofa_rpc_id
    if span.caller_app:
        tags["caller.app"] = span.caller_app
    if span.attributes:
        tags.update(span.attributes)
    record: dict[str, Any] = {
        "traceId": span.w3c_trace_id,
        "id": span.span_id,
        "kind": span.kind,
        "name": span.name,
        "timestamp": span.start_ns // 1000,
        "duration": max(span.duration_us, 1),
        "localEndpoint": local_endpoint,
        "tags": tags,
    }
    if span.parent_id:
        record["parentId"] = span.parent_id
    return record


class BatchingExporter:
    """What the collector exporters share: spans queue (at most `max_queue`) and go out in
    batches of at most `batch_size`, at least every `batch_interval`, from one sender task that
    runs only while there are spans (an idle sidecar keeps no task open for tracing).
    Subclasses send a batch (`_send_all`) and say which span a full queue drops."""

    #: The `exporter` label of the span counters.
    label = ""
    #: A full queue drops its oldest span (zipkin-go's reporter) rather than the new one
    #: (OpenTelemetry's processor).
    drop_oldest = False

    def __init__(self, batch_size: int, batch_interval: float, max_queue: int) -> None:
        self.max_queue = max(max_queue, 1)
        self.batch_size = max(min(batch_size, self.max_queue), 1)
        self.batch_interval = batch_interval
        self._queue: collections.deque[Span] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failing = False
        self.sent = 0
        self.dropped = 0
        exported, dropped = metrics.span_counters()
        self._exported = exported.labels(self.label)
        self._full = dropped.labels(self.label, "queue_full")
        self._failed = dropped.labels(self.label, "export_failed")

    def export(self, span: Span) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            self._full.inc()
            if not self.drop_oldest:
                return  # the queue is never waited on
            queue.popleft()
        queue.append(span)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"layotto-{self.label}-exporter")
        elif len(queue) >= self.batch_size:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            if len(self._queue) < self.batch_size and not self._closing:
                try:
                    async with asyncio.timeout(self.batch_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            await self._send_all()
            if not self._queue:
                # Nothing came in while sending: stop here; the next span starts a new task.
                self._task = None
                return

    def _batches(self) -> Iterator[list[Span]]:
        queue = self._queue
        while queue:
            yield [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]

    async def _send_all(self) -> None:
        raise NotImplementedError

    def _sent(self, count: int) -> None:
        self.sent += count
        self._exported.inc(count)

    def _lost(self, count: int, endpoint: str, exc: BaseException) -> None:
        self.dropped += count
        self._failed.inc(count)
        if not self._failing:  # one warning per outage, not one per batch
            self._failing = True
            log.warning("%s collector %s: %s; spans are dropped until it answers", self.label, endpoint, exc)

    def _answers(self, endpoint: str) -> None:
        if self._failing:
            self._failing = False
            log.info("%s collector %s answers again", self.label, endpoint)

    #: Seconds one send may take (and so the longest shutdown waits for the queue).
    timeout = 5.0
    #: The collector, as messages name it.
    endpoint = ""

    async def close(self) -> None:
        """Send what is queued now, without waiting for the batch interval (one try per batch);
        a collector that does not answer delays shutdown by `timeout` at most."""
        self._closing = True
        task = self._task
        if task is not None:
            self._wake.set()
            try:
                async with asyncio.timeout(self.timeout):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.warning(
                    "%s collector %s: %d spans not sent at shutdown", self.label, self.endpoint, len(self._queue)
                )
        await self._closed()

    async def _closed(self) -> None:
        """Release what the sender holds, once the queue is handed over."""


class ZipkinExporter(BatchingExporter):
    """POSTs spans to a Zipkin collector (`/api/v2/spans`), as zipkin-go's HTTP reporter does:
    at most `batch_size` spans per request, at least every `batch_interval`, and at most
    `max_backlog` spans queued (the oldest are dropped when the collector falls behind).

    The sender task runs only while there are spans: an idle sidecar keeps no task or
    connection open for tracing.
    """

    label = "zipkin"
    drop_oldest = True

    def __init__(
        self,
        endpoint: str = DEFAULT_ZIPKIN_ENDPOINT,
        *,
        service_name: str = DEFAULT_SERVICE_NAME,
        local_host_port: str = "",
        batch_size: int = 100,
        batch_interval: float = 1.0,
        max_backlog: int = 1000,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(batch_size, batch_interval, max_backlog)
        self.endpoint = endpoint
        self.local_endpoint = _endpoint(service_name, local_host_port)
        self.max_backlog = self.max_queue
        self.timeout = timeout

    async def _send_all(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            for batch in self._batches():
                await self._post(session, batch)

    async def _post(self, session: aiohttp.ClientSession, batch: list[Span]) -> None:
        import aiohttp

        body = _JSON.encode([zipkin_span(s, self.local_endpoint) for s in batch])
        try:
            async with session.post(self.endpoint, data=body, headers={"Content-Type": "application/json"}) as reply:
                if reply.status >= 300:
                    detail = (await reply.text())[:200]
                    raise aiohttp.ClientResponseError(
                        reply.request_info, (), status=reply.status, message=detail or reply.reason or ""
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._lost(len(batch), self.endpoint, exc)
            return
        self._answers(self.endpoint)
        self._sent(len(batch))


def _number(settings: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, got {value!r}", where)
    return float(value)


def zipkin_from_config(settings: Mapping[str, Any], where: str) -> ZipkinExporter:
    """Upstream's keys (`reporter_endpoint`, `service_name`, `recorder_host_post`) plus the
    batching knobs of zipkin-go's reporter."""
    endpoint = settings.get("reporter_endpoint") or settings.get("zipkin_url") or DEFAULT_ZIPKIN_ENDPOINT
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"reporter_endpoint must be an http(s) URL, got {endpoint!r}", where)
    return ZipkinExporter(
        endpoint,
        service_name=str(settings.get("service_name") or DEFAULT_SERVICE_NAME),
        local_host_port=str(settings.get("recorder_host_post") or ""),
        batch_size=int(_number(settings, "batch_size", 100, where)),
        batch_interval=_number(settings, "batch_interval", 1.0, where),
        max_backlog=int(_number(settings, "max_backlog", 1000, where)),
        timeout=_number(settings, "timeout", 5.0, where),
    )


#: exporter name -> factory(settings, where). Upstream registers exporters by name the same way.
ExporterFactory = Callable[[Mapping[str, Any], str], Exporter]
EXPORTERS: dict[str, ExporterFactory] = {
    "stdout": lambda settings, where: StdoutExporter(),
    "zipkin": zipkin_from_config,
}


def register_exporter(name: str, factory: ExporterFactory) -> None:
    EXPORTERS[name] = factory
