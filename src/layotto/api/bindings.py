"""InvokeBinding of both gRPC APIs over `layotto.core.bindings`: the request and response
messages have the same fields in Layotto's and Dapr's protos."""

from __future__ import annotations

from typing import Any, ClassVar

from layotto.api.common import Answering, Ctx, answered
from layotto.components.bindings.base import InvokeRequest, string_metadata
from layotto.core.bindings import BindingsCore

__all__ = ["BindingRpcs"]


class BindingRpcs(Answering[BindingsCore]):
    RESPONSE: ClassVar[Any]

    @answered
    async def InvokeBinding(self, request: Any, context: Ctx) -> Any:
        reply = await self.core.invoke(
            request.name, InvokeRequest(request.operation, request.data, dict(request.metadata))
        )
        return self.RESPONSE(data=reply.data, metadata=string_metadata(reply.metadata))
