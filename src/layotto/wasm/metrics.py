"""The functions' series on the sidecar's Prometheus registry (served at /metrics)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from layotto.observability import metrics

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram


@cache
def series() -> tuple[Counter, Counter, Histogram]:
    """Calls, errors (by reason: deadline, trap, paused, ...) and call time, per function id;
    created once per process, as the registry is (tests run many sidecars)."""
    from prometheus_client import Histogram

    return (
        metrics.counter("wasm_function_calls_total", "Calls of a WASM function", ["function"]),
        metrics.counter("wasm_function_errors_total", "WASM function calls without an answer", ["function", "reason"]),
        Histogram(
            "wasm_function_duration_seconds",
            "WASM function call time in seconds",
            ["function"],
            registry=metrics.registry(),
        ),
    )
