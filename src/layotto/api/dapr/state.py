"""Dapr State API: the shared state RPCs with the Dapr proto's responses, and QueryStateAlpha1.

Keys are stored as the Layotto API stores them (the component's `keyPrefix` strategy), so
both APIs read and write the same data. Components declared in Dapr YAML default to Dapr's
`appid` strategy (`<app id>||<key>`), the layout daprd itself uses.
"""

from __future__ import annotations

from layotto.api.common import Ctx, answered
from layotto.api.state import StateRpcs
from layotto_proto.dapr.proto.runtime.v1 import state_pb2 as pb


class DaprStateApi(StateRpcs):
    GET_RESPONSE = pb.GetStateResponse
    BULK_RESPONSE = pb.GetBulkStateResponse

    @answered
    async def QueryStateAlpha1(self, request: pb.QueryStateRequest, context: Ctx) -> pb.QueryStateResponse:
        found = await self.core.query(request.store_name, request.query, dict(request.metadata))
        reply = pb.QueryStateResponse(token=found.token, metadata=found.metadata)
        for item in found.results:
            reply.results.add(key=item.key, data=item.data, etag=item.etag or "", error=item.error)
        return reply
