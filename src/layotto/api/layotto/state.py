"""State API: upstream Layotto's status codes and messages for every failure."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import empty_pb2

from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.state.base import (
    EVENTUAL,
    FEATURE_TRANSACTIONAL,
    FIRST_WRITE,
    LAST_WRITE,
    STRONG,
    DeleteRequest,
    GetRequest,
    Operation,
    SetRequest,
    StateStore,
)
from layotto.errors import (
    BackendUnavailableError,
    ComponentError,
    ETagInvalidError,
    ETagMismatchError,
    InvalidArgumentError,
)
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb

_EMPTY = empty_pb2.Empty()
_CONCURRENCY = {1: FIRST_WRITE, 2: LAST_WRITE}
_CONSISTENCY = {1: EVENTUAL, 2: STRONG}
_SEPARATOR = "||"


def key_prefix(strategy: str, store_name: str, app_id: str) -> str:
    """Upstream's `keyPrefix` metadata: none (default), name, appid, or a literal prefix."""
    lowered = strategy.lower()
    if lowered in ("", "none"):
        return ""
    if lowered == "name":
        return store_name + _SEPARATOR
    if lowered == "appid":
        return (app_id + _SEPARATOR) if app_id else ""
    return strategy + _SEPARATOR


def _etag(has: bool, value: str, concurrency: str) -> str | None:
    """The etag a store must check, or None.

    As upstream's stores read it: last-write ignores the etag, and "" or "0" mean "none"
    (Layotto's JS SDK always sends "0" when the app gave no etag).
    """
    if not has or concurrency == LAST_WRITE or value in ("", "0"):
        return None
    return value


def _status_of(exc: ComponentError) -> grpc.StatusCode:
    if isinstance(exc, ETagMismatchError):
        return grpc.StatusCode.ABORTED
    if isinstance(exc, (ETagInvalidError, InvalidArgumentError)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


class StateApi(ApiBase):
    _state_stores: dict[str, tuple[StateStore, str]]

    async def start_api(self) -> None:
        self._state_stores = {}
        for name, component in self.rt.components("state").items():
            if isinstance(component, StateStore):
                spec = self.rt.spec("state", name)
                strategy = str(spec.metadata.get("keyPrefix", "")) if spec else ""
                self._state_stores[name] = (component, key_prefix(strategy, name, self.rt.app_id))

    async def _store(self, name: str, context: Ctx) -> tuple[StateStore, str]:
        stores: dict[str, tuple[StateStore, str]] = getattr(self, "_state_stores", {})
        if not stores:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "state store is not configured")
        found = stores.get(name)
        if found is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"state store {name} is not found")
        return found

    @staticmethod
    async def _key(prefix: str, key: str, store: str, context: Ctx) -> str:
        if _SEPARATOR in key:
            await abort(context, grpc.StatusCode.UNKNOWN, f"input key/keyPrefix '{key}' can't contain '{_SEPARATOR}'")
        if not key:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"key is empty in state store {store}")
        return prefix + key

    async def GetState(self, request: pb.GetStateRequest, context: Ctx) -> pb.GetStateResponse:
        store, prefix = await self._store(request.store_name, context)
        key = await self._key(prefix, request.key, request.store_name, context)
        try:
            found = await store.get(GetRequest(key, dict(request.metadata), _CONSISTENCY.get(request.consistency, "")))
        except ComponentError as exc:
            await abort(
                context,
                _status_of(exc) if isinstance(exc, BackendUnavailableError) else grpc.StatusCode.INTERNAL,
                f"fail to get {request.key} from state store {request.store_name}: {exc}",
            )
        if found is None:
            return pb.GetStateResponse()
        return pb.GetStateResponse(data=found.data, etag=found.etag or "", metadata=found.metadata)

    async def GetBulkState(self, request: pb.GetBulkStateRequest, context: Ctx) -> pb.GetBulkStateResponse:
        store, prefix = await self._store(request.store_name, context)
        metadata = dict(request.metadata)
        requests = [GetRequest(await self._key(prefix, k, request.store_name, context), metadata) for k in request.keys]
        try:
            results = await store.bulk_get(requests, request.parallelism)
        except ComponentError as exc:
            await abort(
                context, _status_of(exc), f"fail to get bulk state from state store {request.store_name}: {exc}"
            )
        reply = pb.GetBulkStateResponse()
        for original, item in zip(request.keys, results, strict=True):
            out = reply.items.add(key=original, error=item.error)
            if item.response is not None:
                out.data = item.response.data
                out.etag = item.response.etag or ""
                out.metadata.update(item.response.metadata)
        return reply

    async def _set_requests(
        self, prefix: str, store: str, states: Iterable[pb.StateItem], context: Ctx
    ) -> list[SetRequest]:
        return [
            SetRequest(
                key=await self._key(prefix, s.key, store, context),
                value=s.value,
                etag=_etag(s.HasField("etag"), s.etag.value, _CONCURRENCY.get(s.options.concurrency, "")),
                metadata=dict(s.metadata),
                concurrency=_CONCURRENCY.get(s.options.concurrency, ""),
                consistency=_CONSISTENCY.get(s.options.consistency, ""),
            )
            for s in states
        ]

    async def SaveState(self, request: pb.SaveStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._store(request.store_name, context)
        requests = await self._set_requests(prefix, request.store_name, request.states, context)
        try:
            if len(requests) == 1:
                await store.set(requests[0])
            else:
                await store.bulk_set(requests)
        except ComponentError as exc:
            await abort(context, _status_of(exc), f"failed saving state in state store {request.store_name}: {exc}")
        return _EMPTY

    async def DeleteState(self, request: pb.DeleteStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._store(request.store_name, context)
        key = await self._key(prefix, request.key, request.store_name, context)
        delete = DeleteRequest(
            key=key,
            etag=_etag(request.HasField("etag"), request.etag.value, _CONCURRENCY.get(request.options.concurrency, "")),
            metadata=dict(request.metadata),
            concurrency=_CONCURRENCY.get(request.options.concurrency, ""),
            consistency=_CONSISTENCY.get(request.options.consistency, ""),
        )
        try:
            await store.delete(delete)
        except ComponentError as exc:
            await abort(context, _status_of(exc), f"failed deleting state with key {request.key}: {exc}")
        return _EMPTY

    async def DeleteBulkState(self, request: pb.DeleteBulkStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._store(request.store_name, context)
        deletes = [
            DeleteRequest(
                key=await self._key(prefix, s.key, request.store_name, context),
                etag=_etag(s.HasField("etag"), s.etag.value, _CONCURRENCY.get(s.options.concurrency, "")),
                metadata=dict(s.metadata),
                concurrency=_CONCURRENCY.get(s.options.concurrency, ""),
                consistency=_CONSISTENCY.get(s.options.consistency, ""),
            )
            for s in request.states
        ]
        try:
            await store.bulk_delete(deletes)
        except ComponentError as exc:
            # Upstream returns the component's error as it is (a plain error: code Unknown).
            code = _status_of(exc)
            await abort(context, grpc.StatusCode.UNKNOWN if code == grpc.StatusCode.INTERNAL else code, str(exc))
        return _EMPTY

    async def ExecuteStateTransaction(
        self, request: pb.ExecuteStateTransactionRequest, context: Ctx
    ) -> empty_pb2.Empty:
        store, prefix = await self._store(request.storeName, context)
        if FEATURE_TRANSACTIONAL not in store.features:
            await abort(
                context, grpc.StatusCode.UNIMPLEMENTED, f"state store {request.storeName} doesn't support transaction"
            )
        operations: list[Operation] = []
        for op in request.operations:
            item = op.request
            key = await self._key(prefix, item.key, request.storeName, context)
            concurrency = _CONCURRENCY.get(item.options.concurrency, "")
            etag = _etag(item.HasField("etag"), item.etag.value, concurrency)
            consistency = _CONSISTENCY.get(item.options.consistency, "")
            if op.operationType == "upsert":
                operations.append(SetRequest(key, item.value, etag, dict(item.metadata), concurrency, consistency))
            elif op.operationType == "delete":
                operations.append(DeleteRequest(key, etag, dict(item.metadata), concurrency, consistency))
            else:
                await abort(context, grpc.StatusCode.UNIMPLEMENTED, f"operation type {op.operationType} not supported")
        try:
            await store.multi(operations, dict(request.metadata))
        except ComponentError as exc:
            # Upstream answers Internal for every failure here, etag mismatches included.
            code = grpc.StatusCode.UNAVAILABLE if isinstance(exc, BackendUnavailableError) else grpc.StatusCode.INTERNAL
            await abort(context, code, f"error while executing state transaction: {exc}")
        return _EMPTY
