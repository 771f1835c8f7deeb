"""State API: upstream Layotto's status codes and messages for every failure."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from layotto.api.common import failure_code, find
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.api.staterequests import (
    CONSISTENCY,
    SEPARATOR,
    delete_request,
    set_request,
    state_code,
    state_stores,
)
from layotto.components.state.base import (
    FEATURE_TRANSACTIONAL,
    GetRequest,
    Operation,
    StateStore,
)
from layotto.errors import (
    ComponentError,
)
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb

_EMPTY = empty_pb2.Empty()


class StateApi(ApiBase):
    _state_stores: dict[str, tuple[StateStore, str]]

    async def start_api(self) -> None:
        self._state_stores = state_stores(self.rt)

    async def _store(self, name: str, context: Ctx) -> tuple[StateStore, str]:
        return await find(
            getattr(self, "_state_stores", {}),
            name,
            context,
            none_configured="state store is not configured",
            not_found=f"state store {name} is not found",
        )

    @staticmethod
    async def _key(prefix: str, key: str, store: str, context: Ctx) -> str:
        if SEPARATOR in key:
            await abort(context, grpc.StatusCode.UNKNOWN, f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'")
        if not key:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"key is empty in state store {store}")
        return prefix + key

    async def GetState(self, request: pb.GetStateRequest, context: Ctx) -> pb.GetStateResponse:
        store, prefix = await self._store(request.store_name, context)
        key = await self._key(prefix, request.key, request.store_name, context)
        try:
            found = await store.get(GetRequest(key, dict(request.metadata), CONSISTENCY.get(request.consistency, "")))
        except ComponentError as exc:
            await abort(
                context, failure_code(exc), f"fail to get {request.key} from state store {request.store_name}: {exc}"
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
                context, state_code(exc), f"fail to get bulk state from state store {request.store_name}: {exc}"
            )
        reply = pb.GetBulkStateResponse()
        for original, item in zip(request.keys, results, strict=True):
            out = reply.items.add(key=original, error=item.error)
            if item.response is not None:
                out.data = item.response.data
                out.etag = item.response.etag or ""
                out.metadata.update(item.response.metadata)
        return reply

    async def SaveState(self, request: pb.SaveStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._store(request.store_name, context)
        requests = [
            set_request(item, await self._key(prefix, item.key, request.store_name, context)) for item in request.states
        ]
        try:
            if len(requests) == 1:
                await store.set(requests[0])
            else:
                await store.bulk_set(requests)
        except ComponentError as exc:
            await abort(context, state_code(exc), f"failed saving state in state store {request.store_name}: {exc}")
        return _EMPTY

    async def DeleteState(self, request: pb.DeleteStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._store(request.store_name, context)
        key = await self._key(prefix, request.key, request.store_name, context)
        try:
            await store.delete(delete_request(request, key))
        except ComponentError as exc:
            await abort(context, state_code(exc), f"failed deleting state with key {request.key}: {exc}")
        return _EMPTY

    async def DeleteBulkState(self, request: pb.DeleteBulkStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._store(request.store_name, context)
        deletes = [
            delete_request(item, await self._key(prefix, item.key, request.store_name, context))
            for item in request.states
        ]
        try:
            await store.bulk_delete(deletes)
        except ComponentError as exc:
            # Upstream returns the component's error as it is (a plain error: code Unknown).
            code = state_code(exc)
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
            if op.operationType == "upsert":
                operations.append(set_request(item, key))
            elif op.operationType == "delete":
                operations.append(delete_request(item, key))
            else:
                await abort(context, grpc.StatusCode.UNIMPLEMENTED, f"operation type {op.operationType} not supported")
        try:
            await store.multi(operations, dict(request.metadata))
        except ComponentError as exc:
            # Upstream answers Internal for every failure here, etag mismatches included.
            await abort(context, failure_code(exc), f"error while executing state transaction: {exc}")
        return _EMPTY
