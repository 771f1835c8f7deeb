"""The tracing interceptor: a SERVER span per gRPC call, handed to the sidecar's `Tracer`.

Installed only when tracing is on (the sidecar built a tracer) and no actuator serves /metrics;
with an actuator, `observability.interceptor.TelemetryInterceptor` makes the spans beside the
metrics, in the same wrapper. An untraced sidecar without an actuator has no interceptor.
"""

from __future__ import annotations

from layotto.grpcutil import Interceptor
from layotto.observability.interceptor import TelemetryInterceptor
from layotto.observability.tracing.tracer import Tracer


class TracingInterceptor(TelemetryInterceptor):
    """A server span per call, the current span in `tracing.CURRENT` while it runs."""

    def __init__(self, tracer: Tracer) -> None:
        super().__init__(None, tracer)


def interceptors(tracer: Tracer | None) -> list[Interceptor]:
    """The server's tracing interceptors for the sidecar's tracer (none with tracing off)."""
    return [TracingInterceptor(tracer)] if tracer is not None else []
