"""Dapr's output bindings API: InvokeBinding with the Dapr proto's response."""

from __future__ import annotations

from dapr.proto.runtime.v1 import binding_pb2 as pb

from layotto.api.bindings import BindingRpcs


class DaprBindingsApi(BindingRpcs):
    RESPONSE = pb.InvokeBindingResponse
