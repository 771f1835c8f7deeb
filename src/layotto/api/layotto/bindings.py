"""Bindings API: InvokeBinding, with upstream's checks (in its order) and messages."""

from __future__ import annotations

from typing import NoReturn

import grpc

from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.bindings.base import InvokeRequest, OutputBinding, string_metadata
from layotto.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ComponentError,
    InvalidArgumentError,
)
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb


def _status_of(exc: Exception) -> grpc.StatusCode:
    # Upstream answers Internal for everything; an unreachable backend or a timeout gets
    # its own code here so that clients can tell "retry later" from "your request is wrong".
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, BackendTimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.INTERNAL


class BindingsApi(ApiBase):
    _output_bindings: dict[str, OutputBinding]

    async def start_api(self) -> None:
        self._output_bindings = {
            name: component
            for name, component in self.rt.components("bindings").items()
            if isinstance(component, OutputBinding)
        }

    async def InvokeBinding(self, request: pb.InvokeBindingRequest, context: Ctx) -> pb.InvokeBindingResponse:
        name = request.name

        async def fail(exc: Exception | str, code: grpc.StatusCode = grpc.StatusCode.INTERNAL) -> NoReturn:
            await abort(context, code, f"error when invoke output binding {name}: {exc}")

        if not request.operation:
            await fail("operation field is missing from request")
        binding = getattr(self, "_output_bindings", {}).get(name)
        if binding is None:
            await fail(f"couldn't find output binding {name}")
        supported = binding.operations()
        if request.operation not in supported:
            await fail(
                f"binding {name} does not support operation {request.operation}."
                f" supported operations:{' '.join(supported)}"
            )
        try:
            reply = await binding.invoke(InvokeRequest(request.operation, request.data, dict(request.metadata)))
        except (ComponentError, InvalidArgumentError) as exc:
            await fail(exc, _status_of(exc))
        return pb.InvokeBindingResponse(data=reply.data, metadata=string_metadata(reply.metadata))
