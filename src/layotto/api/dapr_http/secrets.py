"""daprd's secrets endpoints over `layotto.core.secrets`: one secret's values, or every
secret of a store (name -> values)."""

from __future__ import annotations

from aiohttp import web

from layotto.api.dapr_http.common import Part, Route, answered, json_reply, query_metadata
from layotto.core.secrets import SecretsCore

__all__ = ["SecretsApi"]


class SecretsApi(Part[SecretsCore]):
    def routes(self) -> list[Route]:
        return [
            Route(("GET",), "/v1.0/secrets/{store}/bulk", self.bulk_get),
            Route(("GET",), "/v1.0/secrets/{store}/{key}", self.get),
        ]

    @answered
    async def get(self, request: web.Request) -> web.StreamResponse:
        values = await self.core.get(request.match_info["store"], request.match_info["key"], query_metadata(request))
        return json_reply(values, decoded=True)

    @answered
    async def bulk_get(self, request: web.Request) -> web.StreamResponse:
        secrets = await self.core.bulk_get(request.match_info["store"], query_metadata(request))
        return json_reply(secrets, decoded=True)
