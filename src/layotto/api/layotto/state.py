"""State API: upstream Layotto's codes and messages for every state problem."""

from __future__ import annotations

import grpc

from layotto.api.common import Answers, failure_code
from layotto.api.state import KEY_SEPARATOR_MESSAGE, SHARED_ANSWERS, StateRpcs, state_code
from layotto.core.state import StateProblem as P
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

Code = grpc.StatusCode


def _bulk_delete_code(exc: BaseException) -> grpc.StatusCode:
    # Upstream returns the component's error as it is (a plain error: code Unknown).
    code = state_code(exc)
    return Code.UNKNOWN if code == Code.INTERNAL else code


class StateApi(StateRpcs):
    GET_RESPONSE = pb.GetStateResponse
    BULK_RESPONSE = pb.GetBulkStateResponse
    #: A transaction op's key is checked before its type (kinds listed first are checked first).
    ANSWERS: Answers = {
        P.KEY_HAS_SEPARATOR: (Code.UNKNOWN, KEY_SEPARATOR_MESSAGE),
        P.KEY_EMPTY: (Code.INVALID_ARGUMENT, "key is empty in state store {store}"),
        **SHARED_ANSWERS,
        P.GET_FAILED: (failure_code, "fail to get {key} from state store {store}: {error}"),
        P.BULK_GET_FAILED: (state_code, "fail to get bulk state from state store {store}: {error}"),
        P.BULK_DELETE_FAILED: (_bulk_delete_code, "{error}"),
        # Upstream answers Internal for every failure here, etag mismatches included.
        P.TRANSACTION_FAILED: (failure_code, "error while executing state transaction: {error}"),
    }
