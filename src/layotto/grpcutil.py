"""Generic grpc.aio server-interceptor helpers, shared by the API layer's stream filters
(`layotto.api.filters`) and the telemetry interceptors (`layotto.observability`)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

__all__ = [
    "Continuation",
    "Handler",
    "Interceptor",
    "WrappingInterceptor",
    "call_type",
    "rewrapped",
    "status_name",
    "wrap_observed",
    "wrap_unary",
]

if TYPE_CHECKING:  # the grpc stubs are generic; the runtime classes are not
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.aio.ServerInterceptor
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]
T = TypeVar("T")


Wrapper = Callable[[Callable[..., Any], bool, bool], Callable[..., Any]]


class WrappingInterceptor(Interceptor):
    """A server interceptor that wraps each method's handler once, on its first call, and hands
    the server that wrapped handler from then on (while the server finds the same handler)."""

    def __init__(self) -> None:
        #: method -> (the handler the server found, its wrapped handler).
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Handler:
        handler = await continuation(details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        method: str = details.method
        found = self._wrapped.get(method)
        if found is None or found[0] is not handler:
            found = self._wrapped[method] = (handler, self._wrap(method, handler))
        return found[1]

    def _wrap(self, method: str, handler: Handler) -> Handler:
        raise NotImplementedError


def rewrapped(handler: Handler, wrap: Wrapper) -> Handler:
    """The handler with its behaviour replaced by wrap(behaviour, streaming_request,
    streaming_response), its (de)serializers kept."""
    for behaviour, make, streaming_request, streaming_response in (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, False, False),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, False, True),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, True, False),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, True, True),
    ):
        if behaviour:
            return make(
                wrap(behaviour, streaming_request, streaming_response),
                handler.request_deserializer,
                handler.response_serializer,
            )
    return handler


def _timed(
    behaviour: Callable[..., Any],
    streaming_request: bool,
    streaming_response: bool,
    prelude: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]] | None,
    before: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any],
    after: Callable[[Any, float, bool, grpc.aio.ServicerContext[Any, Any]], None],
) -> Callable[..., Any]:
    """`behaviour` run after `prelude(context)` and `before(request, context)`, and timed:
    after(what before returned, seconds, ok, context) once it ends."""

    async def begin(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Any, float]:
        if prelude is not None:
            await prelude(context)
        return before(None if streaming_request else request, context), time.perf_counter()

    if streaming_response and inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            state, start = await begin(request, context)
            ok = False
            try:
                async for item in behaviour(request, context):
                    yield item
                ok = True
            finally:
                after(state, time.perf_counter() - start, ok, context)

        return stream

    # A unary answer, or a stream written with context.write() by a coroutine.
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        state, start = await begin(request, context)
        try:
            result = await behaviour(request, context)
        except BaseException:
            after(state, time.perf_counter() - start, False, context)
            raise
        after(state, time.perf_counter() - start, True, context)
        return result

    return call


def wrap_unary(
    handler: Handler,
    before: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]],
    after: Callable[[float, bool], None],
) -> Handler:
    """Wrap whichever behaviour the handler has, calling before() first and after(seconds, ok)."""

    def observe(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        return None

    def done(state: Any, seconds: float, ok: bool, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        after(seconds, ok)

    return rewrapped(
        handler,
        lambda behaviour, streaming_request, streaming_response: _timed(
            behaviour, streaming_request, streaming_response, before, observe, done
        ),
    )


_OK = grpc.StatusCode.OK
_TYPES = ("unary", "server_stream", "client_stream", "bidi_stream")


def status_name(context: grpc.aio.ServicerContext[Any, Any] | None, ok: bool) -> str:
    """The name of the status code a finished call answered with ("OK", "NOT_FOUND", ...)."""
    code = context.code() if context is not None else None
    if isinstance(code, grpc.StatusCode):
        # A handler may set a code and return normally; an abort sets it before raising.
        if code is not _OK or ok:
            return str(code.name)
    if ok:
        return "OK"
    if context is not None and context.cancelled():
        return "CANCELLED"
    return "UNKNOWN"  # an exception that was not an abort: gRPC answers UNKNOWN


def call_type(handler: Handler) -> str:
    """go-grpc-prometheus's `grpc_type`: unary, server_stream, client_stream or bidi_stream."""
    for name, behaviour in zip(
        _TYPES, (handler.unary_unary, handler.unary_stream, handler.stream_unary, handler.stream_stream), strict=True
    ):
        if behaviour:
            return name
    return "unary"


def wrap_observed(
    handler: Handler,
    before: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], T],
    after: Callable[[T, float, bool, grpc.aio.ServicerContext[Any, Any]], None],
) -> Handler:
    """Like `wrap_unary`, for observers that do no I/O, and made once per method rather than
    per call (grpc.aio's cost of a new handler per call is ~10 µs): before(request, context) is
    a plain call, given the request message (None for a streaming request, which is not read
    ahead); what it returns is handed to after(it, seconds, ok, context)."""
    return rewrapped(
        handler,
        lambda behaviour, streaming_request, streaming_response: _timed(
            behaviour, streaming_request, streaming_response, None, before, after
        ),
    )
