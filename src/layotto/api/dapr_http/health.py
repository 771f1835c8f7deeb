"""daprd's endpoints about the sidecar's life: health (`/v1.0/healthz`, `.../outbound`,
answered from `layotto.api.dapr.healthz`, as the actuator answers them) and
`POST /v1.0/shutdown`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from layotto.api.dapr.healthz import ready
from layotto.api.dapr_http.answers import HttpAnswers, RequestProblem
from layotto.api.dapr_http.common import Part, Route, answered, no_content
from layotto.core.problems import Problem
from layotto.runtime.runtime import Runtime

__all__ = ["HealthApi", "ShutdownApi"]


class HealthApi(Part[Runtime]):
    def routes(self) -> list[Route]:
        return [
            Route(("GET",), "/v1.0/healthz", self.healthz),
            Route(("GET",), "/v1.0/healthz/outbound", self.outbound),
        ]

    @answered
    async def healthz(self, request: web.Request) -> web.StreamResponse:
        if not ready(self.core):
            raise Problem(RequestProblem.NOT_READY, targets="[runtime]")
        # Name resolvers probe with the app id they expect, to notice a replaced app.
        if "appid" in request.query and request.query["appid"] != self.core.app_id:
            raise Problem(RequestProblem.APP_ID_MISMATCH)
        return no_content()

    @answered
    async def outbound(self, request: web.Request) -> web.StreamResponse:
        if not ready(self.core):
            raise Problem(RequestProblem.OUTBOUND_NOT_READY)
        return no_content()


class ShutdownApi(Part[Callable[[], None]]):
    """Stops the sidecar as SIGTERM does, with `core` (the sidecar's stop request), once the
    caller has its answer."""

    def __init__(self, shutdown: Callable[[], None], answers: HttpAnswers) -> None:
        super().__init__(shutdown, answers)

    def routes(self) -> list[Route]:
        return [Route(("POST",), "/v1.0/shutdown", self.shutdown)]

    async def shutdown(self, request: web.Request) -> web.StreamResponse:
        # After this call's answer is written: stopping drains the calls in flight, this one too.
        asyncio.get_running_loop().call_soon(self.core)
        return no_content()
