"""Sequencer API: GetNextId with upstream Layotto's codes and messages."""

from __future__ import annotations

import grpc

from layotto.api.common import Answering, Answers, Ctx, answered, failure_code
from layotto.core.sequencer import SequencerCore
from layotto.core.sequencer import SequencerProblem as P
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

Code = grpc.StatusCode
_WEAK = pb.SequencerOptions.WEAK
_STRONG = pb.SequencerOptions.STRONG


def _failure_code(exc: BaseException) -> grpc.StatusCode:
    # Upstream returns component errors as plain Go errors (code Unknown).
    return failure_code(exc, Code.UNKNOWN)


class SequencerApi(Answering[SequencerCore]):
    ANSWERS: Answers = {
        P.NO_STORES: (Code.FAILED_PRECONDITION, "Sequencer store is not configured"),
        P.KEY_EMPTY: (Code.INVALID_ARGUMENT, "Key is empty in sequencer store {store}"),
        P.BAD_INCREMENT: (Code.UNKNOWN, "Options.Increment is illegal."),
        P.KEY_HAS_SEPARATOR: (Code.UNKNOWN, "input key/keyPrefix '{key}' can't contain '{separator}'"),
        P.STORE_NOT_FOUND: (Code.INVALID_ARGUMENT, "Sequencer store {store} not found"),
        P.NEXT_ID_FAILED: (_failure_code, "{error}"),
    }


    @answered
    async def GetNextId(self, request: pb.GetNextIdRequest, context: Ctx) -> pb.GetNextIdResponse:
        increment = request.options.increment if request.HasField("options") else _WEAK
        strong = {_WEAK: False, _STRONG: True}.get(increment)
        next_id = await self.core.next_id(request.store_name, request.key, strong, dict(request.metadata))
        return pb.GetNextIdResponse(next_id=next_id)
