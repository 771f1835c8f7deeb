"""The baseline: a bare grpc.aio server answering the same messages as the sidecar, with no
runtime behind them. Whatever it costs is the cost of Python gRPC itself."""

from __future__ import annotations

import argparse
import asyncio

import grpc

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc


class Bare(runtime_pb2_grpc.RuntimeServicer):
    def __init__(self, value: bytes) -> None:
        self.state = pb.GetStateResponse(data=value, etag="1")

    async def SayHello(self, request: pb.SayHelloRequest, context: object) -> pb.SayHelloResponse:
        return pb.SayHelloResponse(hello=f"greeting, {request.name}" if request.name else "greeting")

    async def GetState(self, request: pb.GetStateRequest, context: object) -> pb.GetStateResponse:
        return self.state


async def serve(port: int, value_size: int) -> None:
    server = grpc.aio.server()
    runtime_pb2_grpc.add_RuntimeServicer_to_server(Bare(b"x" * value_size), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--value-size", type=int, default=100)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.value_size))


if __name__ == "__main__":
    main()
