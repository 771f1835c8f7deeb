"""Shared plumbing of the extension services (upstream's pkg/grpc/<extension>/server.go)."""

from __future__ import annotations

import uuid
from typing import NoReturn

import grpc

from layotto.api.layotto.base import Ctx, abort
from layotto.errors import BackendUnavailableError, UnsupportedError
from layotto.runtime.runtime import Runtime


class ExtensionApi:
    """Base of each extension servicer: start/stop hooks like the Runtime API mixins."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def start_api(self) -> None:
        """Called once after components started: collect this service's components."""

    async def stop_api(self) -> None:
        """Called once at shutdown, before components close."""


async def component_not_found(context: Ctx, kind: str, name: str) -> NoReturn:
    # Upstream's wording, spaces included (pkg/grpc ErrComponentNotFound).
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"component not found. kind: {kind} , name: {name}")


def code_of(exc: Exception) -> grpc.StatusCode:
    """Upstream answers 13 with the component's text for every failure. A backend that cannot be
    reached is UNAVAILABLE here (clients may retry), an operation the backend has no meaning for
    is UNIMPLEMENTED; the text stays the component's."""
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, UnsupportedError):
        return grpc.StatusCode.UNIMPLEMENTED
    return grpc.StatusCode.INTERNAL


def request_id() -> str:
    return uuid.uuid4().hex
