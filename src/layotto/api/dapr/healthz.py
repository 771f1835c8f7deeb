"""Dapr's health endpoints, served on the actuator's HTTP listener; Dapr's HTTP API
(`layotto.api.dapr_http`) answers them too, from the same `ready`.

Dapr SDKs poll `GET /v1.0/healthz/outbound` on the Dapr HTTP port before their first call
(the Python DaprClient blocks in its constructor until it answers 2xx), so an app pointed at
the Dapr HTTP port (`--dapr-http-port`) or at the actuator starts unchanged.
As daprd: 204 once the sidecar serves, 500 while it starts or stops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from layotto.runtime.runtime import Runtime

Route = Callable[[], Awaitable[tuple[int, str, bytes]]]

PATHS = ("/v1.0/healthz", "/v1.0/healthz/outbound")


def ready(rt: Runtime) -> bool:
    """Whether Dapr's health endpoints answer healthy (also on Dapr's HTTP API)."""
    return rt.status == "UP"


def routes(rt: Runtime) -> dict[str, Route]:
    async def healthz() -> tuple[int, str, bytes]:
        return (204, "text/plain", b"") if ready(rt) else (500, "text/plain", b"")

    return dict.fromkeys(PATHS, healthz)
