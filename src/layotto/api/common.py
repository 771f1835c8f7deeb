"""What the Layotto and Dapr APIs do alike: look a component up by name, classify component
failures, read the caller's trace. Each API keeps its own codes and
messages; they are passed in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar

import grpc

from layotto.errors import BackendTimeoutError, BackendUnavailableError

T = TypeVar("T")

#: The servicer context of every unary and streaming handler.
Ctx = grpc.aio.ServicerContext[Any, Any]


async def abort(context: Ctx, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


async def find(components: Mapping[str, T], name: str, context: Ctx, *, none_configured: str, not_found: str) -> T:
    """The component `name`; FAILED_PRECONDITION when the block has none, INVALID_ARGUMENT
    when it has others (both APIs check in this order)."""
    if not components:
        await abort(context, grpc.StatusCode.FAILED_PRECONDITION, none_configured)
    found = components.get(name)
    if found is None:
        await abort(context, grpc.StatusCode.INVALID_ARGUMENT, not_found)
    return found


def failure_code(exc: BaseException, default: grpc.StatusCode = grpc.StatusCode.INTERNAL) -> grpc.StatusCode:
    """The code for a component failure: `default` (each API's own), except that an unreachable
    backend is UNAVAILABLE and a backend timeout DEADLINE_EXCEEDED, so that clients can tell
    an outage from a bug and retry."""
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, BackendTimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return default


def caller_traceparent(context: Ctx) -> str:
    """The caller's `traceparent` header ("" without one)."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            return value
    return ""
