"""The API server's telemetry interceptor: Prometheus families per call (always, when an
actuator serves /metrics) and, when tracing is on, the call's SERVER span, in one wrapper so
that a call pays grpc.aio's cost of an interceptor once.

Per call: `layotto_grpc_server_started_total`, `_handled_total{grpc_code}` and
`_handling_seconds` by service, method and type (go-grpc-prometheus's families); and, for a
call naming a configured component (its `store_name`, `pubsub_name`, `component_name`, ...),
`layotto_component_calls_total` and `layotto_component_call_seconds` by block, component and
operation. Only configured component names become label values, so a client cannot grow
the series without bound by sending made-up names.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from layotto.config.model import RuntimeConfig
from layotto.grpcutil import Handler, Interceptor, WrappingInterceptor, call_type, status_name, wrap_observed
from layotto.observability import metrics
from layotto.observability.logging import COMPONENT
from layotto.observability.tracing.span import CURRENT, Span, start_span

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from layotto.observability.tracing.tracer import Tracer

#: The building block a service serves, for services that are one block's.
_SERVICE_BLOCKS = {
    "spec.proto.extension.v1.s3.ObjectStorageService": "oss",
    "spec.proto.extension.v1.cryption.CryptionService": "cryption",
    "spec.proto.extension.v1.delay_queue.DelayQueue": "pubsub",
    "spec.proto.extension.v1.email.EmailService": "email",
    "spec.proto.extension.v1.phone.PhoneCallService": "phone",
    "spec.proto.extension.v1.sms.SmsService": "sms",
}
#: For the Layotto and Dapr runtime services, which serve every block: a word of the method's
#: name -> its block, the first that matches (Actor before State: actor state is no store's).
_METHOD_BLOCKS = (
    ("Actor", ""),
    ("Workflow", ""),
    ("SayHello", "hello"),
    ("Configuration", "configuration"),
    ("Lock", "lock"),
    ("NextId", "sequencer"),
    ("State", "state"),
    ("Publish", "pubsub"),
    ("Binding", "bindings"),
    ("Secret", "secretstores"),
    ("Subtle", "cryption"),
    ("crypt", "cryption"),
    ("File", "file"),
)
#: Where a request names its component, by block: a field, or a field of a nested message.
_COMPONENT_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "hello": (("service_name",),),
    "bindings": (("name",),),
}
_DEFAULT_FIELDS = (
    ("store_name",),
    ("storeName",),
    ("pubsub_name",),
    ("component_name",),
    ("request", "store_name"),
)


def method_block(service: str, method: str) -> str:
    """The building block a gRPC method calls into, "" for none (invocation, actors, metadata...)."""
    block = _SERVICE_BLOCKS.get(service)
    if block is not None:
        return block
    if not service.startswith(("spec.proto.runtime.", "dapr.proto.runtime.")):
        return ""
    return next((found for word, found in _METHOD_BLOCKS if word in method), "")


def _field_path(request: Any, candidates: tuple[tuple[str, ...], ...]) -> tuple[str, ...] | None:
    """The first candidate path the request message has (every step a field of it)."""
    for path in candidates:
        message = request
        for step in path:
            fields = getattr(getattr(message, "DESCRIPTOR", None), "fields_by_name", {})
            if step not in fields:
                break
            message = getattr(message, step)
        else:
            return path
    return None


class _Component:
    """One component's children for one method, looked up once."""

    __slots__ = ("_calls", "_codes", "_labels", "_seconds")

    def __init__(self, calls: Counter, seconds: Histogram, labels: tuple[str, str, str]) -> None:
        self._calls = calls
        self._labels = labels
        self._codes: dict[str, Any] = {}
        self._seconds = seconds.labels(*labels)

    def done(self, seconds: float, code: str) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._calls.labels(*self._labels, code)
        child.inc()
        self._seconds.observe(seconds)


class MethodMetrics:
    """The children of one gRPC method's series, looked up once: a call only increments them."""

    __slots__ = (
        "_codes",
        "_components",
        "_families",
        "_labels",
        "_path",
        "block",
        "known",
        "operation",
        "started",
        "timer",
    )

    def __init__(
        self, families: metrics.ServerFamilies, full_method: str, kind: str, components: Mapping[str, Collection[str]]
    ) -> None:
        service, _, method = full_method.lstrip("/").partition("/")
        self._families = families
        self._labels = (service, method, kind)
        self.started = families.started.labels(*self._labels)
        self.timer = families.handling.labels(*self._labels)
        self._codes: dict[str, Any] = {}
        self.block = method_block(service, method)
        self.operation = method
        #: The names of the block's configured components: the only ones that become labels.
        self.known: Collection[str] = components.get(self.block, ()) if self.block else ()
        #: None until the first request shows which field names the component.
        self._path: tuple[str, ...] | None = None
        self._components: dict[str, _Component] = {}

    def component(self, request: Any) -> str:
        """The configured component a request names, "" for none (or a streaming request)."""
        if not self.known or request is None:
            return ""
        path = self._path
        if path is None:
            path = self._path = _field_path(request, _COMPONENT_FIELDS.get(self.block, _DEFAULT_FIELDS)) or ()
        value: Any = request
        for step in path:
            value = getattr(value, step)
        return value if path and isinstance(value, str) and value in self.known else ""

    def done(self, seconds: float, code: str, component: str) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._families.handled.labels(*self._labels, code)
        child.inc()
        self.timer.observe(seconds)
        if component:
            found = self._components.get(component)
            if found is None:
                fam, labels = self._families, (self.block, component, self.operation)
                found = self._components[component] = _Component(fam.component_calls, fam.component_seconds, labels)
            found.done(seconds, code)


class ServerMetrics:
    """The server's families, with each method's children made on its first call."""

    def __init__(self, components: Mapping[str, Collection[str]]) -> None:
        self.families = metrics.server_families()
        self.components = {block: frozenset(names) for block, names in components.items()}
        self._methods: dict[str, MethodMetrics] = {}

    def method(self, full_method: str, handler: Handler) -> MethodMetrics:
        found = self._methods.get(full_method)
        if found is None:
            found = self._methods[full_method] = MethodMetrics(
                self.families, full_method, call_type(handler), self.components
            )
        return found


class TelemetryInterceptor(WrappingInterceptor):
    """Metrics for every call (with `server_metrics`) and, with a tracer, its server span (the
    current span in `tracing.CURRENT` while it runs)."""

    def __init__(self, server_metrics: ServerMetrics | None, tracer: Tracer | None = None) -> None:
        super().__init__()
        self.metrics = server_metrics
        self.tracer = tracer

    def _wrap(self, method: str, handler: Handler) -> Handler:
        observed = self.metrics.method(method, handler) if self.metrics is not None else None
        tracer = self.tracer

        def before(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, Span | None]:
            component = ""
            if observed is not None:
                observed.started.inc()
                component = observed.component(request)
                if component:
                    # For the records logged while the call runs (their `component`); the
                    # call's task has a context of its own, as for CURRENT below.
                    COMPONENT.set(component)
            span = None
            if tracer is not None:
                span = start_span(method, context.invocation_metadata() or (), time.time_ns())
                tracer.sample(span)
                # Each call runs in its own task, whose context is a copy: the span cannot
                # leak into another call, and there is nothing to reset afterwards.
                CURRENT.set(span)
            return component, span

        def after(
            state: tuple[str, Span | None], seconds: float, ok: bool, context: grpc.aio.ServicerContext[Any, Any]
        ) -> None:
            component, span = state
            code = status_name(context, ok)
            if observed is not None:
                observed.done(seconds, code, component)
            if span is not None and tracer is not None:
                span.end_ns = span.start_ns + int(seconds * 1e9)
                span.code = code
                tracer.finish(span)

        return wrap_observed(handler, before, after)


def _components(config: RuntimeConfig) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for spec in config.components:
        found.setdefault(spec.block, set()).add(spec.name)
    return found


def interceptors(config: RuntimeConfig, tracer: Tracer | None) -> list[Interceptor]:
    """The server's telemetry interceptor: metrics whenever an actuator serves /metrics, with
    the tracer's spans made by the same wrapper; tracing alone without one; else none."""
    if config.actuator_address:
        return [TelemetryInterceptor(ServerMetrics(_components(config)), tracer)]
    if tracer is not None:
        from layotto.observability.tracing.interceptor import TracingInterceptor

        return [TracingInterceptor(tracer)]
    return []
