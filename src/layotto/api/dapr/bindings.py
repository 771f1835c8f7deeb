"""Dapr's output bindings API (InvokeBinding), with daprd's checks (in its order) and messages."""

from __future__ import annotations

import grpc
from dapr.proto.runtime.v1 import binding_pb2 as pb

from layotto.api.bindings import BindingRpcs, binding_answers
from layotto.api.dapr.base import code_of
from layotto.errors import InvalidArgumentError


def _invoke_code(exc: BaseException) -> grpc.StatusCode:
    return grpc.StatusCode.INVALID_ARGUMENT if isinstance(exc, InvalidArgumentError) else code_of(exc)


class DaprBindingsApi(BindingRpcs):
    RESPONSE = pb.InvokeBindingResponse
    ANSWERS = binding_answers("error invoking output binding {name}: ", _invoke_code, lookup_first=True)
