"""Which spans are exported: daprd's sampler, OpenTelemetry's ParentBased(TraceIDRatioBased).

A span with a W3C parent follows the parent's sampled flag; any other span (a new trace, or a
SOFA one, whose headers carry no flag) is sampled when its trace id falls under the rate, by
OpenTelemetry's rule: the id's last 8 bytes, shifted right by one, below rate * 2**63. Every
sidecar and every OpenTelemetry SDK with the same rate thus decides alike for a trace.

Without a `samplingRate` every span is exported whatever its flags, as upstream Layotto does.
"""

from __future__ import annotations

from layotto.observability.tracing.span import Span

_SAMPLED = "01"
_NOT_SAMPLED = "00"


def ratio_bound(rate: float) -> int:
    """OpenTelemetry's traceIDUpperBound for a rate from 0 to 1."""
    return int(min(max(rate, 0.0), 1.0) * (1 << 63))


class Sampler:
    __slots__ = ("_always", "_bound", "_never", "rate")

    def __init__(self, rate: float | None = None) -> None:
        #: None: upstream's behaviour, every span.
        self.rate = rate
        self._always = rate is None
        self._never = rate is not None and rate <= 0  # daprd: a rate of 0 turns tracing off
        # A rate of 1 samples every trace id: 2**63 is above any id shifted right by one.
        self._bound = ratio_bound(rate) if rate is not None else 1 << 63

    def by_trace_id(self, w3c_trace_id: str) -> bool:
        return int(w3c_trace_id[16:32], 16) >> 1 < self._bound

    def start(self, span: Span) -> None:
        """Set the sampled flag of a span that has no W3C parent, so that what it calls on
        carries the decision; a span with a parent keeps the caller's flags."""
        if self._always or span.parent_id:
            return
        span.flags = _SAMPLED if not self._never and self.by_trace_id(span.w3c_trace_id) else _NOT_SAMPLED

    def keeps(self, span: Span) -> bool:
        """Whether a finished span is exported."""
        if self._always:
            return True
        if self._never:
            return False
        if span.parent_id:
            return bool(int(span.flags, 16) & 1)
        return self.by_trace_id(span.w3c_trace_id)

    def __repr__(self) -> str:
        return "Sampler(every span)" if self._always else f"Sampler(parent-based, else ratio {self.rate})"
