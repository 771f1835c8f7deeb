"""Distributed tracing of the API calls (upstream's `tracing` block).

Components and the runtime read the current call's span with `current_span()`; outgoing calls
carry it with `inject()`. The interceptor lives in `layotto.tracing.interceptor`, imported by
the server only when tracing is configured.
"""

from __future__ import annotations

from layotto.tracing.span import (
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
