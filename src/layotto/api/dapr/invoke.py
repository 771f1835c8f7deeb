"""Dapr's InvokeService: to this sidecar's app (Dapr AppCallback/OnInvoke, or whichever
channel the app config selects) or, through name resolution, to another app's sidecar, by
the invocation engine the Layotto API uses too."""

from __future__ import annotations

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2 as pb
from google.protobuf import any_pb2

from layotto.api.dapr.base import ApiBase, Ctx, abort
from layotto.runtime.invoke import InvokeError, Invoker, invoker_for, is_forwarded, request_of


class DaprInvokeApi(ApiBase):
    _dapr_invoker: Invoker | None = None

    async def start_api(self) -> None:
        self._dapr_invoker = await invoker_for(self.rt)

    async def stop_api(self) -> None:
        # The engine is shared with the Layotto API, which closes it.
        self._dapr_invoker = None

    async def InvokeService(self, request: pb.InvokeServiceRequest, context: Ctx) -> common_pb2.InvokeResponse:
        metadata = tuple(context.invocation_metadata() or ())
        call = request_of(request.id, request.message, common_pb2.HTTPExtension.Verb.Name, metadata)
        if self._dapr_invoker is None:
            await abort(context, grpc.StatusCode.INTERNAL, f"failed to invoke, id: {request.id}, err: invoker not init")
        try:
            reply = await self._dapr_invoker.invoke(
                call,
                time_remaining=context.time_remaining(),
                forwarded=is_forwarded(metadata),
            )
        except InvokeError as exc:
            await abort(context, exc.code, exc.message)
        if reply.headers:
            await context.send_initial_metadata(reply.headers)
        return common_pb2.InvokeResponse(data=any_pb2.Any(value=reply.data), content_type=reply.content_type)
