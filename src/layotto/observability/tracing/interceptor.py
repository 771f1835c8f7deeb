"""The tracing interceptor: a SERVER span per gRPC call, handed to the sidecar's `Tracer`.

Installed only when tracing is on (the sidecar built a tracer): an untraced sidecar has no
interceptor and pays nothing.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from layotto.grpcutil import Continuation, Handler, Interceptor, wrap_unary
from layotto.observability.tracing.span import CURRENT, Span, start_span
from layotto.observability.tracing.tracer import Tracer

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
    """A server span per call, the current span in `tracing.CURRENT` while it runs."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        method: str = details.method
        metadata = details.invocation_metadata or ()
        finish = self.tracer.finish
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


def interceptors(tracer: Tracer | None) -> list[Interceptor]:
    """The server's tracing interceptors for the sidecar's tracer (none with tracing off)."""
    return [TracingInterceptor(tracer)] if tracer is not None else []
