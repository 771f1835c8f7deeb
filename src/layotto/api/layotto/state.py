"""State API: the shared state RPCs with the Layotto proto's responses."""

from __future__ import annotations

from layotto.api.state import StateRpcs
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class StateApi(StateRpcs):
    GET_RESPONSE = pb.GetStateResponse
    BULK_RESPONSE = pb.GetBulkStateResponse
