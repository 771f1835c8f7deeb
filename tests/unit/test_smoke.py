from __future__ import annotations

import grpc

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import running_sidecar

HELLO = {"hellos": {"helloworld": {"type": "helloworld", "hello": "greeting"}}}


async def test_say_hello_and_unimplemented_blocks() -> None:
    async with running_sidecar(HELLO) as (_, address), grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        reply = await stub.SayHello(pb.SayHelloRequest(service_name="helloworld", name="layotto"))
        assert reply.hello == "greeting, layotto"
        try:
            await stub.SayHello(pb.SayHelloRequest(service_name="nope"))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNKNOWN
            assert exc.details() == "no instance found"
        else:
            raise AssertionError("unknown hello service must fail")
