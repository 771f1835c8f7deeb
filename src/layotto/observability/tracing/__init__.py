"""Distributed tracing of the API calls (upstream's `tracing` block).

The runtime and the APIs read the current call's span with `current_span()`; outgoing calls
carry it with `inject()`. The sidecar builds one `Tracer` from the config (`tracer.build`, None
with tracing off) and hands it to the gRPC interceptor (`interceptor.py`) and to event delivery;
neither module is imported by this package, so an untraced sidecar does not load them.
"""

from __future__ import annotations

from layotto.observability.tracing.span import (
    CURRENT,
    SOFA_RPC_ID,
    SOFA_TRACE_ID,
    TRACEPARENT,
    TRACESTATE,
    Span,
    current_span,
    current_traceparent,
    inject,
    start_span,
)

__all__ = [
    "CURRENT",
    "SOFA_RPC_ID",
    "SOFA_TRACE_ID",
    "TRACEPARENT",
    "TRACESTATE",
    "Span",
    "current_span",
    "current_traceparent",
    "inject",
    "start_span",
]
