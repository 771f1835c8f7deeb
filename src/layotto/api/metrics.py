"""The sidecar's Prometheus registry, served at /metrics on the actuator listener."""

from __future__ import annotations

from functools import cache

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)


async def render() -> tuple[int, str, bytes]:
    return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)


@cache
def grpc_metrics() -> tuple[Counter, Counter, Counter, Histogram]:
    """The `grpc_metric` filter's series, created once per process (tests run many sidecars)."""
    return (
        Counter("grpc_request_total", "gRPC requests received", ["service"], registry=REGISTRY),
        Counter("grpc_response_succ_total", "gRPC calls answered OK", ["service"], registry=REGISTRY),
        Counter("grpc_response_fail_total", "gRPC calls that failed", ["service"], registry=REGISTRY),
        Histogram("grpc_cost_time", "gRPC call time in seconds", ["service"], registry=REGISTRY),
    )
