"""Bindings API: InvokeBinding, with upstream's checks (in its order) and messages."""

from __future__ import annotations

from layotto.api.bindings import BindingRpcs, binding_answers
from layotto.api.common import failure_code
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class BindingsApi(BindingRpcs):
    RESPONSE = pb.InvokeBindingResponse
    ANSWERS = binding_answers("error when invoke output binding {name}: ", failure_code, lookup_first=False)
