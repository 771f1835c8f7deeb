"""Shared plumbing of the Dapr API servicers (dapr.proto.runtime.v1.Dapr)."""

from __future__ import annotations

import warnings

import grpc

from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.errors import BackendTimeoutError, BackendUnavailableError, ComponentError

with warnings.catch_warnings():
    # dapr warns at import when the legacy dapr-ext-* wheels sit beside it; that concerns the
    # app's environment, not the stubs used here.
    warnings.simplefilter("ignore", FutureWarning)
    import dapr  # noqa: F401

__all__ = ["ApiBase", "Ctx", "abort", "code_of"]


def code_of(exc: ComponentError, default: grpc.StatusCode = grpc.StatusCode.INTERNAL) -> grpc.StatusCode:
    """Dapr answers Internal for component failures; an unreachable backend is UNAVAILABLE so
    that clients can tell an outage from a bug and retry."""
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, BackendTimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return default
