"""App B of the invocation benchmark: Layotto's AppCallback `OnInvoke` answering with the data it
was sent, and, on the same port, `/bench.Echo/Echo` returning the request bytes unchanged (the end
of the bare-forwarder path, so that path pays no protobuf work at the app either)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc

from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc

ECHO = "/bench.Echo/Echo"


def _identity(data: bytes) -> bytes:
    return data


class App(appcallback_pb2_grpc.AppCallbackServicer):
    async def OnInvoke(self, request: cb.AppInvokeRequest, context: Any) -> cb.AppInvokeResponse:
        return cb.AppInvokeResponse(data=request.data, content_type=request.content_type)


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def serve(port: int) -> None:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(App(), server)
    echo = grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=_identity, response_serializer=_identity)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": echo}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
