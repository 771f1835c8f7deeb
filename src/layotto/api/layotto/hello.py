from __future__ import annotations

import grpc

from layotto.api.common import failure_code
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.hello.base import HelloService
from layotto.errors import ComponentError
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class HelloApi(ApiBase):
    async def SayHello(self, request: pb.SayHelloRequest, context: Ctx) -> pb.SayHelloResponse:
        component = self.rt.get("hello", request.service_name)
        if not isinstance(component, HelloService):
            await abort(context, grpc.StatusCode.UNKNOWN, "no instance found")
        try:
            greeting = await component.say_hello(request.name)
        except ComponentError as exc:
            # Upstream returns the component's error as it is: a plain error is code Unknown, a
            # pluggable component's gRPC status keeps its code (UNAVAILABLE while it is away).
            await abort(context, failure_code(exc, grpc.StatusCode.UNKNOWN), str(exc))
        reply = pb.SayHelloResponse(hello=greeting)
        if request.HasField("data"):
            reply.data.CopyFrom(request.data)
        return reply
