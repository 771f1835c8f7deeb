"""A pluggable state store for the suites: Dapr's StateStore, TransactionalStateStore and
QueriableStateStore... served by a plain grpc.aio server on a Unix socket, with reflection on, in
a process of its own (`python -m tests.contract.state.pluggable_store SOCKET`).

It keeps the items in memory with versions as etags ("1", "2", ...), honours first-write,
`ttlInSeconds` and etags in transactions (all or nothing), and answers as Dapr's pluggable SDKs
do: FAILED_PRECONDITION for an etag mismatch, INVALID_ARGUMENT for an etag that is no version.
Every component instance (daprd's `x-component-instance` header) shares the one store, as
several components over one database table would.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from layotto_proto.dapr._pool import POOL
from layotto_proto.dapr.proto.components.v1 import common_pb2, state_pb2, state_pb2_grpc

FEATURES = ["ETAG", "TRANSACTIONAL", "TTL"]
FIRST_WRITE = state_pb2.StateOptions.CONCURRENCY_FIRST_WRITE
Ctx = grpc.aio.ServicerContext[Any, Any]


@dataclass
class Item:
    value: bytes
    version: int
    expires: float | None


class RefusedError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Store:
    """The items, and the checks of a write against them."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.instances: set[str] = set()

    def live(self, key: str) -> Item | None:
        item = self.items.get(key)
        if item is not None and item.expires is not None and item.expires <= time.monotonic():
            del self.items[key]
            return None
        return item

    def check(self, key: str, etag: state_pb2.Etag | None, first_write: bool, items: dict[str, Item]) -> None:
        current = items.get(key)
        if etag is not None and etag.value:
            if not etag.value.isascii() or not etag.value.isdigit():
                raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid etag value: {etag.value!r}")
            if current is None or str(current.version) != etag.value:
                raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION, "possible etag mismatch")
        elif first_write and current is not None:
            raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION, "possible etag mismatch: the key exists")

    def apply_set(self, request: state_pb2.SetRequest, items: dict[str, Item]) -> None:
        etag = request.etag if request.HasField("etag") else None
        self.check(request.key, etag, request.options.concurrency == FIRST_WRITE, items)
        ttl = int(request.metadata.get("ttlInSeconds", "0") or "0")
        current = items.get(request.key)
        version = current.version + 1 if current is not None else 1
        items[request.key] = Item(request.value, version, time.monotonic() + ttl if ttl > 0 else None)

    def apply_delete(self, request: state_pb2.DeleteRequest, items: dict[str, Item]) -> None:
        etag = request.etag if request.HasField("etag") else None
        self.check(request.key, etag, request.options.concurrency == FIRST_WRITE, items)
        items.pop(request.key, None)

    def snapshot(self, keys: list[str]) -> dict[str, Item]:
        return {key: item for key in keys if (item := self.live(key)) is not None}


async def refusing(context: Ctx, error: RefusedError) -> None:
    await context.abort(error.code, str(error))


class StateStore(state_pb2_grpc.StateStoreServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def Init(self, request: state_pb2.InitRequest, context: Ctx) -> state_pb2.InitResponse:
        self.store.instances.update(v for k, v in context.invocation_metadata() if k == "x-component-instance")
        return state_pb2.InitResponse()

    async def Features(self, request: common_pb2.FeaturesRequest, context: Ctx) -> common_pb2.FeaturesResponse:
        return common_pb2.FeaturesResponse(features=FEATURES)

    async def Ping(self, request: common_pb2.PingRequest, context: Ctx) -> common_pb2.PingResponse:
        return common_pb2.PingResponse()

    async def Get(self, request: state_pb2.GetRequest, context: Ctx) -> state_pb2.GetResponse:
        item = self.store.live(request.key)
        if item is None:
            return state_pb2.GetResponse()
        return state_pb2.GetResponse(data=item.value, etag=state_pb2.Etag(value=str(item.version)))

    async def Set(self, request: state_pb2.SetRequest, context: Ctx) -> state_pb2.SetResponse:
        await self._write(context, [request])
        return state_pb2.SetResponse()

    async def Delete(self, request: state_pb2.DeleteRequest, context: Ctx) -> state_pb2.DeleteResponse:
        await self._write(context, [request])
        return state_pb2.DeleteResponse()

    async def BulkGet(self, request: state_pb2.BulkGetRequest, context: Ctx) -> state_pb2.BulkGetResponse:
        items = []
        for get in request.items:
            item = self.store.live(get.key)
            if item is None:
                items.append(state_pb2.BulkStateItem(key=get.key))
            else:
                etag = state_pb2.Etag(value=str(item.version))
                items.append(state_pb2.BulkStateItem(key=get.key, data=item.value, etag=etag))
        return state_pb2.BulkGetResponse(items=items)

    async def BulkSet(self, request: state_pb2.BulkSetRequest, context: Ctx) -> state_pb2.BulkSetResponse:
        await self._write(context, list(request.items))
        return state_pb2.BulkSetResponse()

    async def BulkDelete(self, request: state_pb2.BulkDeleteRequest, context: Ctx) -> state_pb2.BulkDeleteResponse:
        await self._write(context, list(request.items))
        return state_pb2.BulkDeleteResponse()

    async def _write(self, context: Ctx, writes: list[Any]) -> None:
        """All of `writes` or none: each is checked against the items as the ones before it left
        them, and the items change once every check passed."""
        staged = self.store.snapshot([w.key for w in writes])
        try:
            for write in writes:
                if isinstance(write, state_pb2.SetRequest):
                    self.store.apply_set(write, staged)
                else:
                    self.store.apply_delete(write, staged)
        except RefusedError as error:
            await refusing(context, error)
        for write in writes:
            if write.key in staged:
                self.store.items[write.key] = staged[write.key]
            else:
                self.store.items.pop(write.key, None)


class TransactionalStateStore(state_pb2_grpc.TransactionalStateStoreServicer):
    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def Transact(
        self, request: state_pb2.TransactionalStateRequest, context: Ctx
    ) -> state_pb2.TransactionalStateResponse:
        writes = [getattr(op, op.WhichOneof("request")) for op in request.operations]
        await self.store._write(context, writes)
        return state_pb2.TransactionalStateResponse()


SERVICES = [
    state_pb2.DESCRIPTOR.services_by_name["StateStore"].full_name,
    state_pb2.DESCRIPTOR.services_by_name["TransactionalStateStore"].full_name,
    reflection.SERVICE_NAME,
]


async def start(socket: str) -> grpc.aio.Server:
    """The store, serving `socket` (in this process: the caller stops the server)."""
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    server = grpc.aio.server(options=options)
    store = StateStore(Store())
    state_pb2_grpc.add_StateStoreServicer_to_server(store, server)
    state_pb2_grpc.add_TransactionalStateStoreServicer_to_server(TransactionalStateStore(store), server)
    reflection.enable_server_reflection(SERVICES, server, pool=POOL)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    return server


async def serve(socket: str) -> None:
    from tests.contract.pluggable_process import parent_gone

    server = await start(socket)
    await parent_gone()
    await server.stop(None)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
