from __future__ import annotations

import grpc

from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.hello.base import HelloService
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class HelloApi(ApiBase):
    async def SayHello(self, request: pb.SayHelloRequest, context: Ctx) -> pb.SayHelloResponse:
        component = self.rt.get("hello", request.service_name)
        if not isinstance(component, HelloService):
            await abort(context, grpc.StatusCode.UNKNOWN, "no instance found")
        reply = pb.SayHelloResponse(hello=await component.say_hello(request.name))
        if request.HasField("data"):
            reply.data.CopyFrom(request.data)
        return reply
