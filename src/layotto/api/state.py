"""The State RPCs of both gRPC APIs over `layotto.core.state`.

Layotto's `spec.proto.runtime.v1` and Dapr's `dapr.proto.runtime.v1` state messages have the
same fields (a StateItem has key, value, etag, metadata, options in both), so one set of
handlers maps either onto the core; each API subclasses `StateRpcs` with its response types and
its table of codes and messages. Requests carry the app's key; the core checks and lays it out.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
from google.protobuf import empty_pb2

from layotto.api.common import Answering, Answers, Ctx, answered, failure_code
from layotto.components.state.base import (
    EVENTUAL,
    FIRST_WRITE,
    LAST_WRITE,
    STRONG,
    DeleteRequest,
    GetRequest,
    Operation,
    SetRequest,
)
from layotto.core.state import UPSERT, StateCore
from layotto.core.state import StateProblem as P
from layotto.errors import ETagInvalidError, ETagMismatchError, InvalidArgumentError

CONCURRENCY = {1: FIRST_WRITE, 2: LAST_WRITE}
CONSISTENCY = {1: EVENTUAL, 2: STRONG}
__all__ = [
    "CONCURRENCY",
    "CONSISTENCY",
    "StateRpcs",
    "delete_request",
    "etag_of",
    "get_request",
    "operation",
    "set_request",
    "state_code",
]


def etag_of(has: bool, value: str, concurrency: str) -> str | None:
    """The etag a store must check, or None.

    As upstream's stores read it: last-write ignores the etag, and "" or "0" mean "none"
    (Layotto's JS SDK always sends "0" when the app gave no etag).
    """
    if not has or concurrency == LAST_WRITE or value in ("", "0"):
        return None
    return value


def get_request(key: str, metadata: Any, consistency: int = 0) -> GetRequest:
    return GetRequest(key, dict(metadata), CONSISTENCY.get(consistency, ""))


def set_request(item: Any) -> SetRequest:
    """A SetRequest for `item` (either API's StateItem)."""
    concurrency = CONCURRENCY.get(item.options.concurrency, "")
    return SetRequest(
        key=item.key,
        value=item.value,
        etag=etag_of(item.HasField("etag"), item.etag.value, concurrency),
        metadata=dict(item.metadata),
        concurrency=concurrency,
        consistency=CONSISTENCY.get(item.options.consistency, ""),
    )


def delete_request(item: Any) -> DeleteRequest:
    """A DeleteRequest for `item` (a StateItem or a DeleteStateRequest, same fields)."""
    concurrency = CONCURRENCY.get(item.options.concurrency, "")
    return DeleteRequest(
        key=item.key,
        etag=etag_of(item.HasField("etag"), item.etag.value, concurrency),
        metadata=dict(item.metadata),
        concurrency=concurrency,
        consistency=CONSISTENCY.get(item.options.consistency, ""),
    )


def operation(op: Any) -> tuple[str, Operation]:
    """A transaction operation of either API (`operationType` + `request`) for the core; an
    unknown type goes with a DeleteRequest carrying its key, for the core to refuse."""
    kind: str = op.operationType
    return kind, set_request(op.request) if kind == UPSERT else delete_request(op.request)


def state_code(exc: BaseException) -> grpc.StatusCode:
    """Both APIs' code for a failed save or delete: ABORTED for an etag mismatch,
    INVALID_ARGUMENT for a malformed etag or request, else the common failure code."""
    if isinstance(exc, ETagMismatchError):
        return grpc.StatusCode.ABORTED
    if isinstance(exc, (ETagInvalidError, InvalidArgumentError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    return failure_code(exc)


_EMPTY = empty_pb2.Empty()

#: What both APIs answer alike (upstream Layotto and daprd word these the same way).
SHARED_ANSWERS: Answers = {
    P.NO_STORES: (grpc.StatusCode.FAILED_PRECONDITION, "state store is not configured"),
    P.STORE_NOT_FOUND: (grpc.StatusCode.INVALID_ARGUMENT, "state store {store} is not found"),
    P.NO_TRANSACTIONS: (grpc.StatusCode.UNIMPLEMENTED, "state store {store} doesn't support transaction"),
    P.BAD_OPERATION: (grpc.StatusCode.UNIMPLEMENTED, "operation type {operation} not supported"),
    P.SAVE_FAILED: (state_code, "failed saving state in state store {store}: {error}"),
    P.DELETE_FAILED: (state_code, "failed deleting state with key {key}: {error}"),
}
KEY_SEPARATOR_MESSAGE = "input key/keyPrefix '{key}' can't contain '{separator}'"


class StateRpcs(Answering[StateCore]):
    """GetState ... ExecuteStateTransaction, for an API whose messages are `GET_RESPONSE` and
    `BULK_RESPONSE` (and whose answers are `ANSWERS`)."""

    GET_RESPONSE: ClassVar[Any]
    BULK_RESPONSE: ClassVar[Any]


    @answered
    async def GetState(self, request: Any, context: Ctx) -> Any:
        found = await self.core.get(request.store_name, get_request(request.key, request.metadata, request.consistency))
        if found is None:
            return self.GET_RESPONSE()
        return self.GET_RESPONSE(data=found.data, etag=found.etag or "", metadata=found.metadata)

    @answered
    async def GetBulkState(self, request: Any, context: Ctx) -> Any:
        requests = [get_request(k, request.metadata) for k in request.keys]
        results = await self.core.bulk_get(request.store_name, requests, request.parallelism)
        reply = self.BULK_RESPONSE()
        for original, item in zip(request.keys, results, strict=True):
            out = reply.items.add(key=original, error=item.error)
            if item.response is not None:
                out.data = item.response.data
                out.etag = item.response.etag or ""
                out.metadata.update(item.response.metadata)
        return reply

    @answered
    async def SaveState(self, request: Any, context: Ctx) -> empty_pb2.Empty:
        await self.core.save(request.store_name, [set_request(item) for item in request.states])
        return _EMPTY

    @answered
    async def DeleteState(self, request: Any, context: Ctx) -> empty_pb2.Empty:
        await self.core.delete(request.store_name, delete_request(request))
        return _EMPTY

    @answered
    async def DeleteBulkState(self, request: Any, context: Ctx) -> empty_pb2.Empty:
        await self.core.bulk_delete(request.store_name, [delete_request(item) for item in request.states])
        return _EMPTY

    @answered
    async def ExecuteStateTransaction(self, request: Any, context: Ctx) -> empty_pb2.Empty:
        ops = [operation(op) for op in request.operations]
        await self.core.transact(request.storeName, ops, dict(request.metadata))
        return _EMPTY
