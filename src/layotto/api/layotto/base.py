"""Shared plumbing of the Layotto API servicers."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from layotto.runtime.runtime import Runtime

#: The servicer context of every unary and streaming handler.
Ctx = grpc.aio.ServicerContext[Any, Any]


class ApiBase:
    """Each block's servicer mixin derives from this; they are composed in api/layotto/__init__.py."""

    rt: Runtime

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def start_api(self) -> None:
        """Called once after the runtime started: precompute per-store lookups here."""

    async def stop_api(self) -> None:
        """Called once at shutdown, before components close."""


async def abort(context: Ctx, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")
