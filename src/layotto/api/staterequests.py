"""State requests from the items of either API: Layotto's `spec.proto.runtime.v1.StateItem` and
Dapr's `common.v1.StateItem` have the same fields (key, value, etag, metadata, options), and a
store must read them the same way through both APIs.

Both `api/layotto/state.py` and `api/dapr/state.py` build their store requests here.
"""

from __future__ import annotations

from typing import Any

import grpc

from layotto.api.common import failure_code
from layotto.components.keyprefix import SEPARATOR, key_prefix
from layotto.components.state.base import (
    EVENTUAL,
    FIRST_WRITE,
    LAST_WRITE,
    STRONG,
    DeleteRequest,
    SetRequest,
    StateStore,
)
from layotto.errors import ComponentError, ETagInvalidError, ETagMismatchError, InvalidArgumentError
from layotto.runtime.runtime import Runtime

CONCURRENCY = {1: FIRST_WRITE, 2: LAST_WRITE}
CONSISTENCY = {1: EVENTUAL, 2: STRONG}
__all__ = [
    "CONCURRENCY",
    "CONSISTENCY",
    "SEPARATOR",
    "delete_request",
    "etag_of",
    "set_request",
    "state_code",
    "state_stores",
]


def etag_of(has: bool, value: str, concurrency: str) -> str | None:
    """The etag a store must check, or None.

    As upstream's stores read it: last-write ignores the etag, and "" or "0" mean "none"
    (Layotto's JS SDK always sends "0" when the app gave no etag).
    """
    if not has or concurrency == LAST_WRITE or value in ("", "0"):
        return None
    return value


def set_request(item: Any, key: str) -> SetRequest:
    """A SetRequest for `item` (either API's StateItem) stored under `key`."""
    concurrency = CONCURRENCY.get(item.options.concurrency, "")
    return SetRequest(
        key=key,
        value=item.value,
        etag=etag_of(item.HasField("etag"), item.etag.value, concurrency),
        metadata=dict(item.metadata),
        concurrency=concurrency,
        consistency=CONSISTENCY.get(item.options.consistency, ""),
    )


def delete_request(item: Any, key: str) -> DeleteRequest:
    """A DeleteRequest for `item` (a StateItem or a DeleteStateRequest, same fields)."""
    concurrency = CONCURRENCY.get(item.options.concurrency, "")
    return DeleteRequest(
        key=key,
        etag=etag_of(item.HasField("etag"), item.etag.value, concurrency),
        metadata=dict(item.metadata),
        concurrency=concurrency,
        consistency=CONSISTENCY.get(item.options.consistency, ""),
    )


def state_stores(rt: Runtime) -> dict[str, tuple[StateStore, str]]:
    """name -> (store, key prefix of its `keyPrefix` strategy): the one key layout of both APIs."""
    out: dict[str, tuple[StateStore, str]] = {}
    for name, component in rt.components("state").items():
        if isinstance(component, StateStore):
            spec = rt.spec("state", name)
            strategy = str(spec.metadata.get("keyPrefix", "")) if spec else ""
            out[name] = (component, key_prefix(strategy, name, rt.app_id))
    return out


def state_code(exc: ComponentError) -> grpc.StatusCode:
    """Both APIs' code for a failed save or delete: ABORTED for an etag mismatch,
    INVALID_ARGUMENT for a malformed etag or request, else the common failure code."""
    if isinstance(exc, ETagMismatchError):
        return grpc.StatusCode.ABORTED
    if isinstance(exc, (ETagInvalidError, InvalidArgumentError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    return failure_code(exc)
