"""Dapr State API: daprd's codes and messages for every state problem.

Keys are stored as the Layotto API stores them (the component's `keyPrefix` strategy), so
both APIs read and write the same data. Components declared in Dapr YAML default to Dapr's
`appid` strategy (`<app id>||<key>`), the layout daprd itself uses.
"""

from __future__ import annotations

import grpc
from dapr.proto.runtime.v1 import state_pb2 as pb

from layotto.api.common import Answers, Ctx, answered
from layotto.api.dapr.base import code_of
from layotto.api.state import KEY_SEPARATOR_MESSAGE, SHARED_ANSWERS, StateRpcs, state_code
from layotto.core.state import StateProblem as P

Code = grpc.StatusCode


class DaprStateApi(StateRpcs):
    GET_RESPONSE = pb.GetStateResponse
    BULK_RESPONSE = pb.GetBulkStateResponse
    #: daprd lets an empty key through to the store, and checks a transaction op's type
    #: before its key (kinds listed first are checked first).
    ANSWERS: Answers = {
        **SHARED_ANSWERS,
        P.KEY_HAS_SEPARATOR: (Code.INVALID_ARGUMENT, KEY_SEPARATOR_MESSAGE),
        P.QUERY_UNSUPPORTED: (Code.UNIMPLEMENTED, "state store {store} doesn't support query"),
        P.GET_FAILED: (code_of, "fail to get {key} from state store {store}: {error}"),
        P.BULK_GET_FAILED: (code_of, "fail to get bulk state from state store {store}: {error}"),
        P.BULK_DELETE_FAILED: (state_code, "failed deleting state in state store {store}: {error}"),
        P.TRANSACTION_FAILED: (state_code, "error while executing state transaction: {error}"),
    }

    @answered
    async def QueryStateAlpha1(self, request: pb.QueryStateRequest, context: Ctx) -> pb.QueryStateResponse:
        self.core.query(request.store_name)
        raise AssertionError("unreachable: the core refuses every query")
