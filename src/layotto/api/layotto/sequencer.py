"""Sequencer API: GetNextId."""

from __future__ import annotations

from layotto.api.common import Answering, Ctx, answered
from layotto.core.sequencer import SequencerCore
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

_WEAK = pb.SequencerOptions.WEAK
_STRONG = pb.SequencerOptions.STRONG


class SequencerApi(Answering[SequencerCore]):
    @answered
    async def GetNextId(self, request: pb.GetNextIdRequest, context: Ctx) -> pb.GetNextIdResponse:
        increment = request.options.increment if request.HasField("options") else _WEAK
        strong = {_WEAK: False, _STRONG: True}.get(increment)
        next_id = await self.core.next_id(request.store_name, request.key, strong, dict(request.metadata))
        return pb.GetNextIdResponse(next_id=next_id)
