"""Dapr's output bindings API (InvokeBinding) on the bindings components."""

from __future__ import annotations

import grpc
from dapr.proto.runtime.v1 import binding_pb2 as pb

from layotto.api.dapr.base import ApiBase, Ctx, abort, code_of
from layotto.components.bindings.base import InvokeRequest, OutputBinding, string_metadata
from layotto.errors import ComponentError, InvalidArgumentError


class DaprBindingsApi(ApiBase):
    _dapr_bindings: dict[str, OutputBinding]

    async def start_api(self) -> None:
        self._dapr_bindings = {n: c for n, c in self.rt.components("bindings").items() if isinstance(c, OutputBinding)}

    async def InvokeBinding(self, request: pb.InvokeBindingRequest, context: Ctx) -> pb.InvokeBindingResponse:
        bindings: dict[str, OutputBinding] = getattr(self, "_dapr_bindings", {})
        name = request.name

        async def fail(code: grpc.StatusCode, problem: str) -> None:
            await abort(context, code, f"error invoking output binding {name}: {problem}")

        binding = bindings.get(name)
        if binding is None:
            await fail(grpc.StatusCode.INTERNAL, f"couldn't find output binding {name}")
            raise AssertionError("unreachable")
        if not request.operation:
            await fail(grpc.StatusCode.INTERNAL, "operation field is missing from request")
        supported = binding.operations()
        if request.operation not in supported:
            await fail(
                grpc.StatusCode.INTERNAL,
                f"binding {name} does not support operation {request.operation}. "
                f"supported operations:{' '.join(supported)}",
            )
        try:
            reply = await binding.invoke(InvokeRequest(request.operation, request.data, dict(request.metadata)))
        except InvalidArgumentError as exc:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ComponentError as exc:
            await fail(code_of(exc), str(exc))
        return pb.InvokeBindingResponse(data=reply.data, metadata=string_metadata(reply.metadata))
