"""The tracing interceptor and its configuration (upstream's top-level `tracing` block).

    "tracing": {"enable": true, "driver": "SOFATracer",
                "config": {"generator": "mosntracing", "exporter": ["stdout"]}}

Installed only when `enable` is true: an untraced sidecar has no interceptor and pays nothing.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any

import grpc

from layotto.api.filters import Continuation, Handler, Interceptor, wrap_unary
from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError
from layotto.tracing.exporters import EXPORTERS, Exporter
from layotto.tracing.span import CURRENT, Span, start_span

log = logging.getLogger("layotto.tracing")

DEFAULT_DRIVER = "SOFATracer"
DEFAULT_GENERATOR = "mosntracing"
#: Drivers upstream accepts whose agents this sidecar cannot reach: spans go to stdout instead.
_AGENT_DRIVERS = {"jaeger": "Jaeger", "skywalking": "SkyWalking"}

_OK = grpc.StatusCode.OK


def _code_name(context: grpc.aio.ServicerContext[Any, Any] | None, ok: bool) -> str:
    code = context.code() if context is not None else None
    if isinstance(code, grpc.StatusCode):
        # A handler may set a code and return normally; an abort sets it before raising.
        if code is not _OK or ok:
            return code.name
    if ok:
        return "OK"
    if context is not None and context.cancelled():
        return "CANCELLED"
    return "UNKNOWN"  # an exception that was not an abort: gRPC answers UNKNOWN


class TracingInterceptor(Interceptor):
    """A server span per call, the current span in `layotto.tracing.CURRENT` while it runs."""

    def __init__(self, exporters: list[Exporter]) -> None:
        self.exporters = exporters

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        method: str = details.method
        metadata = details.invocation_metadata or ()
        finish = self.finish
        span: Span | None = None
        call: grpc.aio.ServicerContext[Any, Any] | None = None

        async def before(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            nonlocal span, call
            call = context
            span = start_span(method, metadata, time.time_ns())
            # Each call runs in its own task, whose context is a copy: the span cannot leak
            # into another call, and there is nothing to reset afterwards.
            CURRENT.set(span)

        def after(seconds: float, ok: bool) -> None:
            if span is None:
                return
            span.end_ns = span.start_ns + int(seconds * 1e9)
            span.code = _code_name(call, ok)
            finish(span)

        return wrap_unary(handler, before, after)

    def finish(self, span: Span) -> None:
        """Hand a finished span to every exporter; never raises."""
        for exporter in self.exporters:
            try:
                exporter.export(span)
            except Exception:  # an exporter's bug must not fail the call
                log.exception("exporting a span failed")

    async def close(self) -> None:
        """Flush the exporters: the sidecar calls this when it stops."""
        for exporter in self.exporters:
            try:
                await exporter.close()
            except Exception:
                log.exception("closing a span exporter failed")


def _enabled(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"exporter must be a name or a list of names, got {value!r}", where)


def _settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """`config`, with upstream's nested `config.config` (its Zipkin layout) merged in."""
    settings = dict(section)
    nested = settings.pop("config", None)
    if isinstance(nested, Mapping):
        settings.update(_settings(nested))
    return settings


def build(config: RuntimeConfig) -> TracingInterceptor | None:
    """The interceptor the `tracing` block asks for, None when tracing is off."""
    tracing = config.tracing or {}
    if not _enabled(tracing.get("enable", False)):
        return None
    where = f"{config.source}: $.tracing" if config.source else "$.tracing"
    section = tracing.get("config") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("config must be an object", where)
    settings = _settings(section)
    driver = str(tracing.get("driver") or DEFAULT_DRIVER)
    kind = driver.lower()
    listed = _names(settings.get("exporter", settings.get("exporters")), f"{where}.config.exporter")
    generator = settings.get("generator", DEFAULT_GENERATOR)
    if generator != DEFAULT_GENERATOR:
        log.warning(
            "%s.config.generator %r is not known; using %r (traceparent, else SOFA ids)",
            where,
            generator,
            DEFAULT_GENERATOR,
        )
    if kind == "sofatracer":
        # As upstream's examples: no exporter named means stdout.
        names = listed if "exporter" in settings or "exporters" in settings else ["stdout"]
    elif kind == "zipkin":
        names = ["zipkin", *listed]
    elif kind in _AGENT_DRIVERS:
        log.warning(
            "tracing driver %r: no %s agent client in this sidecar; spans are written to stdout instead",
            driver,
            _AGENT_DRIVERS[kind],
        )
        names = ["stdout", *listed]
    else:
        raise ConfigError(
            f"unknown tracing driver {driver!r} (known: SOFATracer, zipkin, jaeger, skywalking)", f"{where}.driver"
        )
    exporters: list[Exporter] = []
    for name in dict.fromkeys(names):  # each once, in order
        factory = EXPORTERS.get(name)
        if factory is None:
            known = ", ".join(sorted(EXPORTERS))
            raise ConfigError(f"unknown exporter {name!r} (known: {known})", f"{where}.config.exporter")
        exporters.append(factory(settings, f"{where}.config"))
    log.info("tracing on: driver %s, exporters %s", driver, ", ".join(dict.fromkeys(names)) or "none")
    return TracingInterceptor(exporters)


#: id(config) -> its tracer; an entry goes when its config is collected.
_tracers: dict[int, TracingInterceptor | None] = {}


def tracer_for(config: RuntimeConfig) -> TracingInterceptor | None:
    """The one tracer of a sidecar's config, built on first use: the server's interceptor and
    event delivery share its exporters, so one stop hook flushes every span."""
    key = id(config)
    if key not in _tracers:
        _tracers[key] = build(config)
        weakref.finalize(config, _tracers.pop, key, None)
    return _tracers[key]


def interceptors(config: RuntimeConfig) -> list[Interceptor]:
    interceptor = tracer_for(config)
    return [interceptor] if interceptor is not None else []
