"""`helloworld.Greeter` (gRPC's example service), over the custom components of kind `helloworld`:
upstream's API plugin example (cmd/layotto_multiple_api/helloworld), which shows how an API
finds the custom components of the kind it knows through the runtime.

As upstream's, SayHello asks the component named `demo` and answers "We don't want to talk with
you!" when there is none. The messages are gRPC's example ones (`HelloRequest{name 1}`,
`HelloReply{message 1}`), built here from their descriptor rather than generated.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from layotto.api.common import Ctx, abort, failure_code
from layotto.components.custom.helloworld import KIND, HelloWorld
from layotto.errors import ComponentError
from layotto.runtime.runtime import Runtime

__all__ = ["SERVICE", "GreeterApi", "register"]

SERVICE = "helloworld.Greeter"
#: The component upstream's example always asks.
COMPONENT_NAME = "demo"
REFUSAL = "We don't want to talk with you!"


def _messages() -> tuple[Any, Any]:
    """HelloRequest and HelloReply of grpc's examples/protos/helloworld.proto, in a pool of
    their own (an app's generated copy in the default pool is left alone)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="helloworld/helloworld.proto", package="helloworld", syntax="proto3"
    )
    for message, field in (("HelloRequest", "name"), ("HelloReply", "message")):
        kind = proto.message_type.add(name=message)
        kind.field.add(
            name=field,
            number=1,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
            json_name=field,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName("helloworld.HelloRequest"))
    reply = message_factory.GetMessageClass(pool.FindMessageTypeByName("helloworld.HelloReply"))
    return request, reply


class GreeterApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.request_type, self.reply_type = _messages()

    async def SayHello(self, request: Any, context: Ctx) -> Any:
        component = self.rt.custom(KIND).get(COMPONENT_NAME)
        if not isinstance(component, HelloWorld):
            return self.reply_type(message=REFUSAL)
        try:
            message = await component.say_hello(request.name)
        except ComponentError as exc:
            await abort(context, failure_code(exc, grpc.StatusCode.UNKNOWN), str(exc))
        return self.reply_type(message=message)

    async def start_api(self) -> None:
        pass

    async def stop_api(self) -> None:
        pass


def register(server: grpc.aio.Server, rt: Runtime) -> GreeterApi:
    api = GreeterApi(rt)
    handler = grpc.unary_unary_rpc_method_handler(
        api.SayHello,
        request_deserializer=api.request_type.FromString,
        response_serializer=api.reply_type.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"SayHello": handler}),))
    return api
