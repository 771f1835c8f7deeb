"""InvokeService of both gRPC APIs over the one invocation engine (`layotto.runtime.invoke`):
the request and response messages have the same fields in Layotto's and Dapr's protos."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
from google.protobuf import any_pb2

from layotto.api.common import Ctx, abort
from layotto.runtime.invoke import InvokeError, Invoker, is_forwarded, request_of

__all__ = ["InvokeRpcs"]


class InvokeRpcs:
    RESPONSE: ClassVar[Any]
    #: The HTTP verb's name from its enum value, in this API's proto.
    VERB_NAME: ClassVar[Any]
    #: Trailing metadata sent with this sidecar's own failures.
    FAILURE_TRAILER: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def forwarded(self, metadata: tuple[tuple[str, Any], ...]) -> bool:
        """Whether a call came from another sidecar (delivered here, never passed on)."""
        return is_forwarded(metadata)

    async def InvokeService(self, request: Any, context: Ctx) -> Any:
        metadata = tuple(context.invocation_metadata() or ())
        message = request.message
        if message.HasField("http_extension"):
            # proto3 enums are open: a value this proto does not name arrives as a bare number.
            verb = message.http_extension.verb
            try:
                type(self).VERB_NAME(verb)
            except ValueError:
                await abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, f"message.http_extension.verb: unknown HTTP verb {verb}"
                )
        call = request_of(request.id, message, type(self).VERB_NAME, metadata)
        try:
            reply = await self._invoker.invoke(
                call, time_remaining=context.time_remaining(), forwarded=self.forwarded(metadata)
            )
        except InvokeError as exc:
            await context.abort(exc.code, exc.message, trailing_metadata=self.FAILURE_TRAILER)
            raise AssertionError("unreachable: context.abort raises") from exc
        if reply.headers:
            await context.send_initial_metadata(reply.headers)
        return self.RESPONSE(data=any_pb2.Any(value=reply.data), content_type=reply.content_type)
