"""Bindings API: InvokeBinding, with upstream's checks (in its order) and messages."""

from __future__ import annotations

from typing import NoReturn

import grpc

from layotto.api.common import failure_code
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.bindings.base import InvokeRequest, OutputBinding, string_metadata
from layotto.errors import (
    ComponentError,
    InvalidArgumentError,
)
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb


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
            await fail(exc, failure_code(exc))
        return pb.InvokeBindingResponse(data=reply.data, metadata=string_metadata(reply.metadata))
