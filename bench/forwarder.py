"""The bare baseline of one invocation hop: a grpc.aio server that takes any unary call as bytes,
sends those bytes on to the same method of `--next` over one long-lived channel, and returns the
reply bytes. Two in a row are the floor under two sidecars: what Python gRPC alone costs per hop.
The caller's deadline is passed on, as a sidecar does; nothing is decoded or re-encoded."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc


def _identity(data: bytes) -> bytes:
    return data


class Forward(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method: str = handler_call_details.method
        handler = self.handlers.get(method)
        if handler is None:
            handler = self.handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._forwarder(method), request_deserializer=_identity, response_serializer=_identity
            )
        return handler

    def _forwarder(self, method: str) -> Callable[[bytes, Any], Awaitable[bytes]]:
        stub = self.channel.unary_unary(method, request_serializer=_identity, response_deserializer=_identity)

        async def forward(request: bytes, context: Any) -> bytes:
            try:
                reply: bytes = await stub(request, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            return reply

        return forward


async def serve(port: int, next_hop: str) -> None:
    async with grpc.aio.insecure_channel(next_hop) as channel:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((Forward(channel),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--next", required=True, help="host:port of the next hop")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.next))


if __name__ == "__main__":
    main()
