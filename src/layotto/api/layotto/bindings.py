"""Bindings API: InvokeBinding with the Layotto proto's response."""

from __future__ import annotations

from layotto.api.bindings import BindingRpcs
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class BindingsApi(BindingRpcs):
    RESPONSE = pb.InvokeBindingResponse
