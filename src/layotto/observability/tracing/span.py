"""Server spans, the trace context they come from, and the one place the current span lives.

A span is made per API call by the tracing interceptor. Its trace context is taken from the
caller, in this order: W3C `traceparent`/`tracestate`, else SOFATracer's
`rpc_trace_context.sofaTraceId`/`sofaRpcId` (what upstream Layotto's `mosntracing` generator
reads), else a new trace. The span is then the value of `CURRENT` for the rest of the call,
so the runtime can stamp outgoing calls and events with it.

This module imports nothing heavy: invoke and cloudevents read it on their hot paths.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Upstream's keys (MOSN pkg/trace/sofa), lower-cased as gRPC metadata keys always are.
SOFA_TRACE_ID = "rpc_trace_context.sofatraceid"
SOFA_RPC_ID = "rpc_trace_context.sofarpcid"
SOFA_CALLER_APP = "rpc_trace_context.sofacallerapp"
SOFA_BAGGAGE = "rpc_trace_context.sofapenattrs"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_HEX_ID = re.compile(r"^[0-9a-f]{1,32}$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_SAMPLED = "01"

# Ids only need to be unique, not unpredictable: the Mersenne twister is ~10x cheaper than
# urandom. Seeded from the OS, and again in a forked child so siblings never share ids.
_rng = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(16)))


def new_span_id() -> str:
    return f"{_rng.getrandbits(64) or 1:016x}"  # all zeros is not a valid id


def new_trace_id() -> str:
    return f"{_rng.getrandbits(128) or 1:032x}"


def to_w3c_trace_id(trace_id: str) -> str:
    """A 32-hex trace id for any trace id: a SOFATracer id (hex IP + millis + counter + pid,
    usually 30 hex digits) is zero-padded; anything else is hashed, the same on every sidecar."""
    lowered = trace_id.lower()
    if _HEX_ID.match(lowered):
        padded = lowered.zfill(32)
        if padded != _ZERO_TRACE:
            return padded
    return hashlib.blake2b(trace_id.encode(), digest_size=16).hexdigest()


class Span:
    """One span: a call this sidecar served (SERVER), or an event it delivered to the app
    (CONSUMER)."""

    __slots__ = (
        "_children",
        "attributes",
        "caller_app",
        "code",
        "end_ns",
        "flags",
        "kind",
        "name",
        "parent_id",
        "sofa_rpc_id",
        "span_id",
        "start_ns",
        "trace_id",
        "tracestate",
        "w3c_trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: str,
        span_id: str,
        parent_id: str = "",
        *,
        start_ns: int = 0,
        flags: str = _SAMPLED,
        tracestate: str = "",
        sofa_rpc_id: str = "",
        caller_app: str = "",
        w3c_trace_id: str = "",
    ) -> None:
        self.name = name
        #: The trace id as the caller knows it (a SOFATracer id is kept verbatim).
        self.trace_id = trace_id
        #: The same trace as 32 hex digits, for traceparent and Zipkin.
        self.w3c_trace_id = w3c_trace_id or to_w3c_trace_id(trace_id)
        self.span_id = span_id
        #: The caller's span id (16 hex digits), "" for a root span or a SOFA caller.
        self.parent_id = parent_id
        self.flags = flags
        self.tracestate = tracestate
        #: Set when the trace came in with SOFA headers: the caller's rpc id ("0", "0.1", ...).
        self.sofa_rpc_id = sofa_rpc_id
        self.caller_app = caller_app
        self.start_ns = start_ns
        self.end_ns = 0
        #: gRPC status code name once finished ("OK", "NOT_FOUND", ...).
        self.code = ""
        self.attributes: dict[str, str] | None = None
        #: Zipkin's span kind.
        self.kind = "SERVER"
        self._children: itertools.count[int] | None = None

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def duration_us(self) -> int:
        return max((self.end_ns - self.start_ns) // 1000, 0)

    def set_attribute(self, key: str, value: Any) -> None:
        """Add a tag (component name, store, ...); cheap enough to call on a hot path."""
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = str(value)

    def traceparent(self) -> str:
        """The traceparent of a call made on behalf of this span (this span is its parent)."""
        return f"00-{self.w3c_trace_id}-{self.span_id}-{self.flags}"

    def next_sofa_rpc_id(self) -> str:
        """SOFATracer's id of the next call this span makes: "0.1", "0.2", ... below its own."""
        if self._children is None:
            self._children = itertools.count(1)
        return f"{self.sofa_rpc_id}.{next(self._children)}"

    def __repr__(self) -> str:
        return f"Span({self.name!r}, trace={self.trace_id}, span={self.span_id}, parent={self.parent_id or '-'})"


#: The span of the API call being served, None outside traced calls (or with tracing off).
CURRENT: ContextVar[Span | None] = ContextVar("layotto_current_span", default=None)


def current_span() -> Span | None:
    return CURRENT.get()


def current_traceparent() -> str:
    """traceparent for work done on behalf of the current call; "" when none is traced."""
    span = CURRENT.get()
    return span.traceparent() if span is not None else ""


def is_traceparent(value: object) -> bool:
    """A W3C traceparent another party can continue (version not ff, ids not all zeros)."""
    if not isinstance(value, str):
        return False
    found = _TRACEPARENT.match(value)
    return bool(found and found[1] != "ff" and found[2] != _ZERO_TRACE and found[3] != _ZERO_SPAN)


def start_span(name: str, metadata: Iterable[tuple[str, Any]], start_ns: int) -> Span:
    """A server span continuing the caller's trace, or starting one."""
    traceparent = tracestate = sofa_trace = sofa_rpc = caller_app = ""
    for key, value in metadata:
        # Only the few keys that matter are compared; metadata is short, so one pass is cheapest.
        if key == TRACEPARENT:
            traceparent = value
        elif key == TRACESTATE:
            tracestate = value
        elif key == SOFA_TRACE_ID:
            sofa_trace = value
        elif key == SOFA_RPC_ID:
            sofa_rpc = value
        elif key == SOFA_CALLER_APP:
            caller_app = value
    if traceparent and isinstance(traceparent, str):
        found = _TRACEPARENT.match(traceparent.strip().lower())
        # Version ff is forbidden, all-zero ids are invalid: such a header starts a new trace.
        if found and found[1] != "ff" and found[2] != _ZERO_TRACE and found[3] != _ZERO_SPAN:
            return Span(
                name,
                found[2],
                new_span_id(),
                found[3],
                w3c_trace_id=found[2],
                start_ns=start_ns,
                flags=found[4],
                tracestate=tracestate if isinstance(tracestate, str) else "",
                caller_app=caller_app if isinstance(caller_app, str) else "",
            )
    if sofa_trace and isinstance(sofa_trace, str):
        return Span(
            name,
            sofa_trace,
            new_span_id(),
            start_ns=start_ns,
            # Upstream's generator takes the caller's rpc id as its own, "0" for a first hop.
            sofa_rpc_id=sofa_rpc if sofa_rpc and isinstance(sofa_rpc, str) else "0",
            caller_app=caller_app if isinstance(caller_app, str) else "",
        )
    trace_id = new_trace_id()
    return Span(
        name,
        trace_id,
        new_span_id(),
        start_ns=start_ns,
        w3c_trace_id=trace_id,
        caller_app=caller_app if isinstance(caller_app, str) else "",
    )


_OWN_KEYS = frozenset({TRACEPARENT, TRACESTATE})
_SOFA_KEYS = frozenset({TRACEPARENT, TRACESTATE, SOFA_TRACE_ID, SOFA_RPC_ID})


def inject(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` of an outgoing call with the current trace context in place of the caller's.

    W3C headers always (this span becomes the callee's parent); the SOFA ones too when the
    trace came in with them, with a child rpc id as SOFATracer numbers calls. Unchanged (the
    same list) when no traced call is being served.
    """
    span = CURRENT.get()
    if span is None:
        return headers
    sofa = bool(span.sofa_rpc_id)
    drop = _SOFA_KEYS if sofa else _OWN_KEYS
    out = [(k, v) for k, v in headers if k not in drop]
    out.append((TRACEPARENT, span.traceparent()))
    if span.tracestate:
        out.append((TRACESTATE, span.tracestate))
    if sofa:
        out.append((SOFA_TRACE_ID, span.trace_id))
        out.append((SOFA_RPC_ID, span.next_sofa_rpc_id()))
    return out
