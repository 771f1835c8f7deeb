"""The `dapr-api-token` check (Dapr's API token authentication), for both APIs on the port.

When the sidecar has a token (env DAPR_API_TOKEN -> cfg.api_token), every call must carry it
in the gRPC metadata `dapr-api-token`, else it is refused with UNAUTHENTICATED and Dapr's
messages. Health checks and reflection stay open so probes and tools work without it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from layotto.grpcutil import Handler, Interceptor

TOKEN_HEADER = "dapr-api-token"
MISSING = "missing api token in request metadata"
MISMATCH = "authentication error: api token mismatch"
#: Method path prefixes that need no token.
OPEN_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/", "/grpc.reflection.")

#: May answer None: no service has the method.
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


def _rejecting(handler: Handler, message: str) -> Handler:
    """A handler of the same shape as `handler` that fails the call before running it."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class ApiTokenInterceptor(Interceptor):
    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def intercept_service(  # type: ignore[override]  # grpc returns None for unknown methods
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> Handler | None:
        given: str | bytes | None = None
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_HEADER:
                given = value
                break
        if given is not None:
            raw = given if isinstance(given, bytes) else given.encode()
            # Constant time, so the token cannot be guessed byte by byte from response times.
            if hmac.compare_digest(raw, self._token):
                return await continuation(details)
        method = details.method or ""
        if method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        handler = await continuation(details)
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED as usual
            return None
        return _rejecting(handler, MISSING if given is None else MISMATCH)


def interceptors(token: str | None) -> list[Interceptor]:
    return [ApiTokenInterceptor(token)] if token else []
