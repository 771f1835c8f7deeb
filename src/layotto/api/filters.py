"""Stream filters of the gRPC listener, as upstream configures them in `stream_filters`:
`grpc_metric` (Prometheus counters per method) and `flowControlFilter` (QPS limits per
method). Each is a grpc.aio interceptor, installed only when configured, so an unfiltered
sidecar pays nothing for them."""

from __future__ import annotations

import time
from typing import Any

import grpc

from layotto.errors import ConfigError
from layotto.grpcutil import Continuation, Handler, Interceptor, wrap_unary


async def _nothing(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    return None


class MetricsInterceptor(Interceptor):
    """`grpc_metric`: request_total, response_succ_total, response_fail_total, cost_time by service."""

    def __init__(self) -> None:
        from layotto.observability.metrics import grpc_metrics

        self.requests, self.succ, self.fail, self.cost = grpc_metrics()

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        service = details.method
        requests, succ, fail = (m.labels(service) for m in (self.requests, self.succ, self.fail))
        cost = self.cost.labels(service)

        async def before(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            requests.inc()

        def after(seconds: float, ok: bool) -> None:
            (succ if ok else fail).inc()
            cost.observe(seconds)

        return wrap_unary(handler, before, after)


class _TokenBucket:
    """Allows `threshold` calls per second per resource (Sentinel's QPS grade)."""

    __slots__ = ("capacity", "stamp", "tokens")

    def __init__(self, threshold: float) -> None:
        self.capacity = threshold
        self.tokens = threshold
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.capacity)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class FlowControlInterceptor(Interceptor):
    """`flowControlFilter`: per-method QPS limits; a limited call gets RESOURCE_EXHAUSTED with
    upstream's text `current request is limited` (upstream answers HTTP-style 509)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.enabled = bool(config.get("global_switch", False))
        self.buckets: dict[str, _TokenBucket] = {}
        for i, rule in enumerate(config.get("rules", []) or []):
            resource, threshold = rule.get("resource"), rule.get("threshold")
            if not isinstance(resource, str) or not isinstance(threshold, int | float) or threshold <= 0:
                raise ConfigError(
                    "a rule needs a resource and a positive threshold", f"flowControlFilter.config.rules[{i}]"
                )
            self.buckets[resource] = _TokenBucket(float(threshold))

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler:
        handler = await continuation(details)
        bucket = self.buckets.get(details.method) if self.enabled else None
        if handler is None or bucket is None:
            return handler

        async def before(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            if not bucket.take():
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "current request is limited")

        def after(seconds: float, ok: bool) -> None:
            return None

        return wrap_unary(handler, before, after)


def from_config(stream_filters: list[dict[str, Any]]) -> list[Interceptor]:
    interceptors: list[Interceptor] = []
    for flt in stream_filters:
        kind = flt.get("type")
        if kind == "flowControlFilter":
            interceptors.append(FlowControlInterceptor(flt.get("config") or {}))
        elif kind == "grpc_metric":
            interceptors.append(MetricsInterceptor())
    return interceptors
