"""Dapr State API on the same state components (and key layout) as the Layotto API.

Keys are stored as the Layotto API stores them (the component's `keyPrefix` strategy), so
both APIs read and write the same data. Components declared in Dapr YAML default to Dapr's
`appid` strategy (`<app id>||<key>`), the layout daprd itself uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2 as pb
from google.protobuf import empty_pb2

from layotto.api.common import find
from layotto.api.dapr.base import ApiBase, Ctx, abort, code_of
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
    DeleteRequest,
    GetRequest,
    Operation,
    SetRequest,
    StateStore,
)
from layotto.errors import ComponentError

_EMPTY = empty_pb2.Empty()


class DaprStateApi(ApiBase):
    _dapr_state: dict[str, tuple[StateStore, str]]

    async def start_api(self) -> None:
        self._dapr_state = state_stores(self.rt)

    async def _state_store(self, name: str, context: Ctx) -> tuple[StateStore, str]:
        return await find(
            getattr(self, "_dapr_state", {}),
            name,
            context,
            none_configured="state store is not configured",
            not_found=f"state store {name} is not found",
        )

    @staticmethod
    async def _state_key(prefix: str, key: str, context: Ctx) -> str:
        if SEPARATOR in key:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'"
            )
        return prefix + key

    async def GetState(self, request: pb.GetStateRequest, context: Ctx) -> pb.GetStateResponse:
        store, prefix = await self._state_store(request.store_name, context)
        key = await self._state_key(prefix, request.key, context)
        try:
            found = await store.get(GetRequest(key, dict(request.metadata), CONSISTENCY.get(request.consistency, "")))
        except ComponentError as exc:
            await abort(
                context, code_of(exc), f"fail to get {request.key} from state store {request.store_name}: {exc}"
            )
        if found is None:
            return pb.GetStateResponse()
        return pb.GetStateResponse(data=found.data, etag=found.etag or "", metadata=found.metadata)

    async def GetBulkState(self, request: pb.GetBulkStateRequest, context: Ctx) -> pb.GetBulkStateResponse:
        store, prefix = await self._state_store(request.store_name, context)
        metadata = dict(request.metadata)
        requests = [GetRequest(await self._state_key(prefix, k, context), metadata) for k in request.keys]
        try:
            results = await store.bulk_get(requests, request.parallelism)
        except ComponentError as exc:
            await abort(context, code_of(exc), f"fail to get bulk state from state store {request.store_name}: {exc}")
        reply = pb.GetBulkStateResponse()
        for original, item in zip(request.keys, results, strict=True):
            out = reply.items.add(key=original, error=item.error)
            if item.response is not None:
                out.data = item.response.data
                out.etag = item.response.etag or ""
                out.metadata.update(item.response.metadata)
        return reply

    async def _dapr_sets(self, prefix: str, states: Iterable[common_pb2.StateItem], context: Ctx) -> list[SetRequest]:
        return [set_request(s, await self._state_key(prefix, s.key, context)) for s in states]

    async def _dapr_deletes(
        self, prefix: str, states: Iterable[common_pb2.StateItem], context: Ctx
    ) -> list[DeleteRequest]:
        return [delete_request(s, await self._state_key(prefix, s.key, context)) for s in states]

    async def SaveState(self, request: pb.SaveStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._state_store(request.store_name, context)
        requests = await self._dapr_sets(prefix, request.states, context)
        if not requests:
            return _EMPTY
        try:
            if len(requests) == 1:
                await store.set(requests[0])
            else:
                await store.bulk_set(requests)
        except ComponentError as exc:
            await abort(context, state_code(exc), f"failed saving state in state store {request.store_name}: {exc}")
        return _EMPTY

    async def DeleteState(self, request: pb.DeleteStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._state_store(request.store_name, context)
        delete = delete_request(request, await self._state_key(prefix, request.key, context))
        try:
            await store.delete(delete)
        except ComponentError as exc:
            await abort(context, state_code(exc), f"failed deleting state with key {request.key}: {exc}")
        return _EMPTY

    async def DeleteBulkState(self, request: pb.DeleteBulkStateRequest, context: Ctx) -> empty_pb2.Empty:
        store, prefix = await self._state_store(request.store_name, context)
        deletes = await self._dapr_deletes(prefix, request.states, context)
        try:
            await store.bulk_delete(deletes)
        except ComponentError as exc:
            await abort(context, state_code(exc), f"failed deleting state in state store {request.store_name}: {exc}")
        return _EMPTY

    async def ExecuteStateTransaction(
        self, request: pb.ExecuteStateTransactionRequest, context: Ctx
    ) -> empty_pb2.Empty:
        store, prefix = await self._state_store(request.storeName, context)
        if FEATURE_TRANSACTIONAL not in store.features:
            await abort(
                context, grpc.StatusCode.UNIMPLEMENTED, f"state store {request.storeName} doesn't support transaction"
            )
        operations: list[Operation] = []
        for op in request.operations:
            if op.operationType == "upsert":
                operations.extend(await self._dapr_sets(prefix, [op.request], context))
            elif op.operationType == "delete":
                operations.extend(await self._dapr_deletes(prefix, [op.request], context))
            else:
                await abort(context, grpc.StatusCode.UNIMPLEMENTED, f"operation type {op.operationType} not supported")
        try:
            await store.multi(operations, dict(request.metadata))
        except ComponentError as exc:
            await abort(context, state_code(exc), f"error while executing state transaction: {exc}")
        return _EMPTY

    async def QueryStateAlpha1(self, request: pb.QueryStateRequest, context: Ctx) -> pb.QueryStateResponse:
        await self._state_store(request.store_name, context)
        # No state component here implements Dapr's query language yet.
        await abort(context, grpc.StatusCode.UNIMPLEMENTED, f"state store {request.store_name} doesn't support query")
