"""The State RPCs of both gRPC APIs over `layotto.core.state`.

Layotto's `spec.proto.runtime.v1` and Dapr's `dapr.proto.runtime.v1` state messages have the
same fields (a StateItem has key, value, etag, metadata, options in both), so one set of
handlers maps either onto the core; each API subclasses `StateRpcs` with its response types and
its answers (`answers.toml`). Requests carry the app's key; the core checks and lays it out.
"""

from __future__ import annotations

from typing import Any, ClassVar

from google.protobuf import empty_pb2

from layotto.api.common import Answering, Ctx, answered
from layotto.components.state import base as state
from layotto.core.state import UPSERT, StateCore, etag_of

CONCURRENCY = {1: state.FIRST_WRITE, 2: state.LAST_WRITE}
CONSISTENCY = {1: state.EVENTUAL, 2: state.STRONG}
__all__ = [
    "CONCURRENCY",
    "CONSISTENCY",
    "StateRpcs",
    "delete_request",
    "get_request",
    "operation",
    "set_request",
]


def get_request(key: str, metadata: Any, consistency: int = 0) -> state.GetRequest:
    return state.GetRequest(key, dict(metadata), CONSISTENCY.get(consistency, ""))


def _conditions(item: Any) -> dict[str, Any]:
    """What a save and a delete read alike from `item`: its etag, metadata and options."""
    concurrency = CONCURRENCY.get(item.options.concurrency, "")
    return {
        "etag": etag_of(item.HasField("etag"), item.etag.value, concurrency),
        "metadata": dict(item.metadata),
        "concurrency": concurrency,
        "consistency": CONSISTENCY.get(item.options.consistency, ""),
    }


def set_request(item: Any) -> state.SetRequest:
    """A SetRequest for `item` (either API's StateItem)."""
    return state.SetRequest(key=item.key, value=item.value, **_conditions(item))


def delete_request(item: Any) -> state.DeleteRequest:
    """A DeleteRequest for `item` (a StateItem or a DeleteStateRequest, same fields)."""
    return state.DeleteRequest(key=item.key, **_conditions(item))


def operation(op: Any) -> tuple[str, state.Operation]:
    """A transaction operation of either API (`operationType` + `request`) for the core; an
    unknown type goes with a DeleteRequest carrying its key, for the core to refuse."""
    kind: str = op.operationType
    return kind, set_request(op.request) if kind == UPSERT else delete_request(op.request)


_EMPTY = empty_pb2.Empty()


class StateRpcs(Answering[StateCore]):
    """GetState ... ExecuteStateTransaction, for an API whose messages are `GET_RESPONSE` and
    `BULK_RESPONSE`."""

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
