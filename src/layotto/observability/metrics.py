"""The sidecar's Prometheus registry, served at /metrics on the actuator listener.

The registry is our own (not prometheus_client's global one), with the process, platform and
GC collectors on it, and no `_created` series: they double the series count and no dashboard
reads them. Every family is listed in docs/metrics.md.

prometheus_client is imported on first use (a metric recorded or /metrics scraped), so a
sidecar without an actuator, which records nothing, does not carry it in memory."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

#: Seconds: API calls of a sidecar take from well under a millisecond (in-memory stores) to
#: seconds (a slow backend, an invocation), so the buckets start below prometheus_client's.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@cache
def registry() -> CollectorRegistry:
    from prometheus_client import (
        CollectorRegistry,
        GCCollector,
        Info,
        PlatformCollector,
        ProcessCollector,
        disable_created_metrics,
    )

    from layotto import __version__

    # A switch of prometheus_client's, for the whole process: the sidecar's is the only registry in it.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped in prometheus_client)
    created = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=created)
    PlatformCollector(registry=created)
    GCCollector(registry=created)
    Info("layotto_build", "The sidecar's version", registry=created).info({"version": __version__})
    return created


def counter(name: str, documentation: str, labels: list[str]) -> Counter:
    from prometheus_client import Counter

    return Counter(name, documentation, labels, registry=registry())


def histogram(
    name: str, documentation: str, labels: list[str], buckets: tuple[float, ...] = LATENCY_BUCKETS
) -> Histogram:
    from prometheus_client import Histogram

    return Histogram(name, documentation, labels, registry=registry(), buckets=buckets)


#: The text format every scraper reads. prometheus_client's newest (1.0.0) exists for UTF-8
#: names, which the sidecar has none of: the body is the same, older scrapers need not know it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def render() -> tuple[int, str, bytes]:
    from prometheus_client import generate_latest

    return 200, CONTENT_TYPE, generate_latest(registry())


class ServerFamilies(NamedTuple):
    """The gRPC server's families (go-grpc-prometheus's names and labels, `layotto_` first),
    and the building blocks' calls per component."""

    started: Counter
    handled: Counter
    handling: Histogram
    component_calls: Counter
    component_seconds: Histogram


_GRPC = ["grpc_service", "grpc_method", "grpc_type"]
_COMPONENT = ["block", "component", "operation"]


@cache
def server_families() -> ServerFamilies:
    """Created once per process (tests run many sidecars)."""
    return ServerFamilies(
        counter("layotto_grpc_server_started_total", "gRPC calls started by the sidecar's API server", _GRPC),
        counter(
            "layotto_grpc_server_handled_total",
            "gRPC calls the sidecar's API server finished, by status code",
            [*_GRPC, "grpc_code"],
        ),
        histogram(
            "layotto_grpc_server_handling_seconds",
            "Time from the start of a gRPC call to its end (the whole stream for a streaming call)",
            _GRPC,
        ),
        counter(
            "layotto_component_calls_total",
            "API calls served by a configured component, by building block, operation and status code",
            [*_COMPONENT, "grpc_code"],
        ),
        histogram("layotto_component_call_seconds", "Time of API calls served by a configured component", _COMPONENT),
    )


@cache
def span_counters() -> tuple[Counter, Counter]:
    """Spans an exporter handed over, and spans it lost (queue full, export failed, rejected)."""
    return (
        counter("layotto_tracing_spans_exported_total", "Spans a collector accepted", ["exporter"]),
        counter(
            "layotto_tracing_spans_dropped_total", "Spans lost before a collector took them", ["exporter", "reason"]
        ),
    )


@cache
def grpc_metrics() -> tuple[Counter, Counter, Counter, Histogram]:
    """The `grpc_metric` filter's series (upstream's names, with the unit on the histogram's),
    created once per process (tests run many sidecars)."""
    from prometheus_client import Histogram

    return (
        counter("grpc_request_total", "gRPC requests received", ["service"]),
        counter("grpc_response_succ_total", "gRPC calls answered OK", ["service"]),
        counter("grpc_response_fail_total", "gRPC calls that failed", ["service"]),
        Histogram("grpc_cost_time_seconds", "gRPC call time in seconds", ["service"], registry=registry()),
    )
