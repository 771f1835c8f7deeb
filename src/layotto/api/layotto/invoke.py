"""Invoke API: InvokeService to this sidecar's app or, through name resolution, another's."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2

from layotto.api.layotto.base import ApiBase, Ctx
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto.runtime.invoke import (
    ORIGIN_HEADER,
    InvokeError,
    Invoker,
    close_invoker,
    invoker_for,
    is_forwarded,
    request_of,
)

_ORIGIN = ((ORIGIN_HEADER, "sidecar"),)


class InvokeApi(ApiBase):
    _invoker: Invoker | None = None

    async def start_api(self) -> None:
        self._invoker = await invoker_for(self.rt)

    async def stop_api(self) -> None:
        self._invoker = None
        await close_invoker(self.rt)

    async def InvokeService(self, request: pb.InvokeServiceRequest, context: Ctx) -> pb.InvokeResponse:
        metadata = tuple(context.invocation_metadata() or ())
        call = request_of(request.id, request.message, pb.HTTPExtension.Verb.Name, metadata)
        try:
            if self._invoker is None:
                raise InvokeError(grpc.StatusCode.UNKNOWN, "invoker not init")
            reply = await self._invoker.invoke(
                call,
                time_remaining=context.time_remaining(),
                forwarded=is_forwarded(metadata),
            )
        except InvokeError as exc:
            # Marked as this sidecar's answer: a forwarding sidecar passes it on unchanged.
            await context.abort(exc.code, exc.message, trailing_metadata=_ORIGIN)
            raise AssertionError("unreachable: context.abort raises") from exc
        if reply.headers:
            await context.send_initial_metadata(reply.headers)
        return pb.InvokeResponse(data=any_pb2.Any(value=reply.data), content_type=reply.content_type)
