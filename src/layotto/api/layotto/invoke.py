"""Invoke API: InvokeService to this sidecar's app or, through name resolution, another's."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2

from layotto.api.layotto.base import ApiBase, Ctx
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto.runtime.invoke import (
    HOP_HEADER,
    ORIGIN_HEADER,
    InvokeError,
    Invoker,
    InvokeRequest,
    call_headers,
    close_invoker,
    invoker_for,
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
        message = request.message
        verb = ""
        if message.HasField("http_extension"):
            # As upstream: the enum's name, so a caller that set no verb sends "NONE".
            verb = pb.HTTPExtension.Verb.Name(message.http_extension.verb)
        call = InvokeRequest(
            app_id=request.id,
            method=message.method,
            data=message.data.value,
            content_type=message.content_type,
            verb=verb,
            querystring=message.http_extension.querystring,
            headers=call_headers(metadata),
        )
        try:
            if self._invoker is None:
                raise InvokeError(grpc.StatusCode.UNKNOWN, "invoker not init")
            reply = await self._invoker.invoke(
                call,
                time_remaining=context.time_remaining(),
                forwarded=any(key == HOP_HEADER for key, _ in metadata),
            )
        except InvokeError as exc:
            # Marked as this sidecar's answer: a forwarding sidecar passes it on unchanged.
            await context.abort(exc.code, exc.message, trailing_metadata=_ORIGIN)
            raise AssertionError("unreachable: context.abort raises") from exc
        if reply.headers:
            await context.send_initial_metadata(reply.headers)
        return pb.InvokeResponse(data=any_pb2.Any(value=reply.data), content_type=reply.content_type)
