"""InvokeBinding of both gRPC APIs over `layotto.core.bindings`: the request and response
messages have the same fields in Layotto's and Dapr's protos, and the two APIs word their
problems alike but for the lead-in and the order of the first two checks."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc

from layotto.api.common import Answering, Answers, Code, Ctx, answered
from layotto.components.bindings.base import InvokeRequest, string_metadata
from layotto.core.bindings import BindingsCore
from layotto.core.bindings import BindingsProblem as P

__all__ = ["BindingRpcs", "binding_answers"]


def binding_answers(lead_in: str, invoke_code: Code, *, lookup_first: bool) -> Answers:
    """An API's answers: each message starts with `lead_in` (which may name `{name}`); the
    binding is looked up before or after the operation is checked."""
    internal = grpc.StatusCode.INTERNAL
    missing: Answers = {P.OPERATION_MISSING: (internal, lead_in + "operation field is missing from request")}
    lookup: Answers = {P.NOT_FOUND: (internal, lead_in + "couldn't find output binding {name}")}
    return {
        **({**lookup, **missing} if lookup_first else {**missing, **lookup}),
        P.UNSUPPORTED_OPERATION: (
            internal,
            lead_in + "binding {name} does not support operation {operation}. supported operations:{supported}",
        ),
        P.INVOKE_FAILED: (invoke_code, lead_in + "{error}"),
    }


class BindingRpcs(Answering[BindingsCore]):
    RESPONSE: ClassVar[Any]

    @answered
    async def InvokeBinding(self, request: Any, context: Ctx) -> Any:
        reply = await self.core.invoke(
            request.name, InvokeRequest(request.operation, request.data, dict(request.metadata))
        )
        return self.RESPONSE(data=reply.data, metadata=string_metadata(reply.metadata))
