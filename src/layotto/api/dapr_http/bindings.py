"""daprd's output bindings endpoint over `layotto.core.bindings`.

The body is `{"data": ..., "metadata": {...}, "operation": "..."}`; the binding receives the
data as daprd sends it, json.Marshal of the decoded value (a string arrives quoted). The
binding's reply metadata comes back as `metadata.<key>` headers.
"""

from __future__ import annotations

from aiohttp import web

from layotto.api.dapr_http import common
from layotto.api.dapr_http.answers import RequestProblem
from layotto.components.bindings.base import InvokeRequest
from layotto.core.bindings import BindingsCore
from layotto.core.problems import Problem

__all__ = ["BindingsApi"]


class BindingsApi(common.Part[BindingsCore]):
    def routes(self) -> list[common.Route]:
        return [common.Route(("POST", "PUT"), "/v1.0/bindings/{name}", self.invoke)]

    @common.answered
    async def invoke(self, request: web.Request) -> web.StreamResponse:
        body = await common.read_json(request, RequestProblem.MALFORMED_REQUEST)
        try:
            spec = common.want_object(body, "http.OutputBindingRequest")
            metadata = common.map_field(spec, "metadata", "OutputBindingRequest")
            operation = common.text_field(spec, "operation", "OutputBindingRequest")
        except common.BodyError as exc:
            raise Problem(RequestProblem.MALFORMED_REQUEST, exc) from None
        traceparent = request.headers.get("traceparent")
        if traceparent:
            # The binding carries the caller's trace on, as daprd passes its span's.
            metadata["traceparent"] = traceparent
        data = common.go_json(common.field(spec, "data"), decoded=True).encode()
        reply = await self.core.invoke(request.match_info["name"], InvokeRequest(operation, data, metadata))
        return common.raw_reply(200, reply.data, headers=common.metadata_headers(reply.metadata))
