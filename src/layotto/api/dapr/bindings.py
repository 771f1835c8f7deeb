"""Dapr's output bindings API: InvokeBinding with the Dapr proto's response."""

from __future__ import annotations

from layotto.api.bindings import BindingRpcs
from layotto_proto.dapr.proto.runtime.v1 import binding_pb2 as pb


class DaprBindingsApi(BindingRpcs):
    RESPONSE = pb.InvokeBindingResponse
