"""The sidecar's Prometheus registry, served at /metrics on the actuator listener.

prometheus_client is imported on first use (a metric recorded or /metrics scraped), so a
sidecar that records nothing does not carry it in memory."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram


@cache
def registry() -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry(auto_describe=True)


def counter(name: str, documentation: str, labels: list[str]) -> Counter:
    from prometheus_client import Counter

    return Counter(name, documentation, labels, registry=registry())


async def render() -> tuple[int, str, bytes]:
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    return 200, CONTENT_TYPE_LATEST, generate_latest(registry())


@cache
def grpc_metrics() -> tuple[Counter, Counter, Counter, Histogram]:
    """The `grpc_metric` filter's series, created once per process (tests run many sidecars)."""
    from prometheus_client import Histogram

    return (
        counter("grpc_request_total", "gRPC requests received", ["service"]),
        counter("grpc_response_succ_total", "gRPC calls answered OK", ["service"]),
        counter("grpc_response_fail_total", "gRPC calls that failed", ["service"]),
        Histogram("grpc_cost_time", "gRPC call time in seconds", ["service"], registry=registry()),
    )
