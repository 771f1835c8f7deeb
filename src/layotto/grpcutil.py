"""Generic grpc.aio server-interceptor helpers, shared by the API layer's stream filters
(`layotto.api.filters`) and the tracing interceptor (`layotto.observability.tracing`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

__all__ = ["Continuation", "Handler", "Interceptor", "wrap_unary"]

if TYPE_CHECKING:  # the grpc stubs are generic; the runtime classes are not
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.aio.ServerInterceptor
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


def wrap_unary(
    handler: Handler,
    before: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]],
    after: Callable[[float, bool], None],
) -> Handler:
    """Wrap whichever behaviour the handler has, calling before() first and after(seconds, ok)."""

    def wrap(behaviour: Callable[..., Any], streaming_response: bool) -> Callable[..., Any]:
        if streaming_response:

            async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await before(context)
                start, ok = time.perf_counter(), False
                try:
                    async for item in behaviour(request, context):
                        yield item
                    ok = True
                finally:
                    after(time.perf_counter() - start, ok)

            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await before(context)
            start, ok = time.perf_counter(), False
            try:
                result = await behaviour(request, context)
                ok = True
                return result
            finally:
                after(time.perf_counter() - start, ok)

        return unary

    for behaviour, make, streaming_response in (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, False),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, True),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, False),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, True),
    ):
        if behaviour:
            return make(wrap(behaviour, streaming_response), handler.request_deserializer, handler.response_serializer)
    return handler
