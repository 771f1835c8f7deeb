"""One client shape over both gRPC APIs of a sidecar: Layotto's `spec.proto.runtime.v1.Runtime`
(layotto_proto stubs) and Dapr's `dapr.proto.runtime.v1.Dapr` (the `dapr` package's stubs).

Each method builds that API's own request messages and returns plain values, so one test can run
on both APIs and differ only in the codes and messages it expects (tables keyed by `Api.name`).
Calls that fail raise `grpc.aio.AioRpcError`; `failure()` turns one into (code, details).
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as lpb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc as lgrpc

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.proto.common.v1 import common_pb2 as dcommon
    from dapr.proto.runtime.v1 import binding_pb2 as dbinding
    from dapr.proto.runtime.v1 import configuration_pb2 as dconfig
    from dapr.proto.runtime.v1 import dapr_pb2_grpc
    from dapr.proto.runtime.v1 import lock_pb2 as dlock
    from dapr.proto.runtime.v1 import pubsub_pb2 as dpubsub
    from dapr.proto.runtime.v1 import secret_pb2 as dsecret
    from dapr.proto.runtime.v1 import state_pb2 as dstate

LAYOTTO = "layotto"
DAPR = "dapr"
APIS = [LAYOTTO, DAPR]


async def failure(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    """The (code, details) the call ended with; fails the test if it succeeded."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call was expected to fail")


@dataclass(frozen=True)
class Item:
    key: str
    value: bytes = b""
    etag: str | None = None
    first_write: bool = False
    metadata: dict[str, str] | None = None


class Api:
    name: str

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    # ---- state ----
    async def get_state(self, store: str, key: str) -> tuple[bytes, str]:
        raise NotImplementedError

    async def save_state(self, store: str, *items: Item) -> None:
        raise NotImplementedError

    async def delete_state(self, store: str, key: str, etag: str | None = None) -> None:
        raise NotImplementedError

    async def bulk_get(self, store: str, keys: list[str]) -> list[tuple[str, bytes, str, str]]:
        raise NotImplementedError

    async def bulk_delete(self, store: str, *items: Item) -> None:
        raise NotImplementedError

    async def transaction(self, store: str, *operations: tuple[str, Item]) -> None:
        raise NotImplementedError

    # ---- pub/sub, lock, secrets, bindings, configuration ----
    async def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str = "", metadata: dict[str, str] | None = None
    ) -> None:
        raise NotImplementedError

    async def try_lock(self, store: str, resource: str, owner: str, expire: int) -> bool:
        raise NotImplementedError

    async def unlock(self, store: str, resource: str, owner: str) -> str:
        """The status name in this API's enum."""
        raise NotImplementedError

    async def get_secret(self, store: str, key: str) -> dict[str, str]:
        raise NotImplementedError

    async def bulk_secret(self, store: str) -> dict[str, dict[str, str]]:
        raise NotImplementedError

    async def invoke_binding(
        self, name: str, operation: str, data: bytes = b"", metadata: dict[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    async def get_configuration(self, store: str, keys: list[str]) -> dict[str, str]:
        """key -> content of the sidecar app's items under the default group and label."""
        raise NotImplementedError


def _layotto_item(item: Item) -> lpb.StateItem:
    state = lpb.StateItem(key=item.key, value=item.value, metadata=item.metadata or {})
    if item.etag is not None:
        state.etag.value = item.etag
    if item.first_write:
        state.options.concurrency = lpb.StateOptions.CONCURRENCY_FIRST_WRITE
    return state


def _dapr_item(item: Item) -> dcommon.StateItem:
    state = dcommon.StateItem(key=item.key, value=item.value, metadata=item.metadata or {})
    if item.etag is not None:
        state.etag.value = item.etag
    if item.first_write:
        state.options.concurrency = dcommon.StateOptions.CONCURRENCY_FIRST_WRITE
    return state


class LayottoApi(Api):
    name = LAYOTTO

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self.stub = lgrpc.RuntimeStub(channel)

    async def get_state(self, store: str, key: str) -> tuple[bytes, str]:
        reply = await self.stub.GetState(lpb.GetStateRequest(store_name=store, key=key))
        return reply.data, reply.etag

    async def save_state(self, store: str, *items: Item) -> None:
        await self.stub.SaveState(lpb.SaveStateRequest(store_name=store, states=[_layotto_item(i) for i in items]))

    async def delete_state(self, store: str, key: str, etag: str | None = None) -> None:
        request = lpb.DeleteStateRequest(store_name=store, key=key)
        if etag is not None:
            request.etag.value = etag
        await self.stub.DeleteState(request)

    async def bulk_get(self, store: str, keys: list[str]) -> list[tuple[str, bytes, str, str]]:
        reply = await self.stub.GetBulkState(lpb.GetBulkStateRequest(store_name=store, keys=keys))
        return [(i.key, i.data, i.etag, i.error) for i in reply.items]

    async def bulk_delete(self, store: str, *items: Item) -> None:
        request = lpb.DeleteBulkStateRequest(store_name=store, states=[_layotto_item(i) for i in items])
        await self.stub.DeleteBulkState(request)

    async def transaction(self, store: str, *operations: tuple[str, Item]) -> None:
        ops = [lpb.TransactionalStateOperation(operationType=kind, request=_layotto_item(i)) for kind, i in operations]
        await self.stub.ExecuteStateTransaction(lpb.ExecuteStateTransactionRequest(storeName=store, operations=ops))

    async def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str = "", metadata: dict[str, str] | None = None
    ) -> None:
        request = lpb.PublishEventRequest(
            pubsub_name=pubsub, topic=topic, data=data, data_content_type=content_type, metadata=metadata or {}
        )
        await self.stub.PublishEvent(request)

    async def try_lock(self, store: str, resource: str, owner: str, expire: int) -> bool:
        request = lpb.TryLockRequest(store_name=store, resource_id=resource, lock_owner=owner, expire=expire)
        return bool((await self.stub.TryLock(request)).success)

    async def unlock(self, store: str, resource: str, owner: str) -> str:
        reply = await self.stub.Unlock(lpb.UnlockRequest(store_name=store, resource_id=resource, lock_owner=owner))
        return lpb.UnlockResponse.Status.Name(reply.status)

    async def keep_alive(self, store: str, resource: str, owner: str, expire: int) -> str:
        request = lpb.LockKeepAliveRequest(store_name=store, resource_id=resource, lock_owner=owner, expire=expire)
        return lpb.LockKeepAliveResponse.Status.Name((await self.stub.LockKeepAlive(request)).status)

    async def get_secret(self, store: str, key: str) -> dict[str, str]:
        return dict((await self.stub.GetSecret(lpb.GetSecretRequest(store_name=store, key=key))).data)

    async def bulk_secret(self, store: str) -> dict[str, dict[str, str]]:
        reply = await self.stub.GetBulkSecret(lpb.GetBulkSecretRequest(store_name=store))
        return {name: dict(values.secrets) for name, values in reply.data.items()}

    async def invoke_binding(
        self, name: str, operation: str, data: bytes = b"", metadata: dict[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        request = lpb.InvokeBindingRequest(name=name, operation=operation, data=data, metadata=metadata or {})
        reply = await self.stub.InvokeBinding(request)
        return reply.data, dict(reply.metadata)

    async def get_configuration(self, store: str, keys: list[str]) -> dict[str, str]:
        reply = await self.stub.GetConfiguration(lpb.GetConfigurationRequest(store_name=store, keys=keys))
        return {i.key: i.content for i in reply.items}


class DaprApi(Api):
    name = DAPR

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self.stub: Any = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]

    async def get_state(self, store: str, key: str) -> tuple[bytes, str]:
        reply = await self.stub.GetState(dstate.GetStateRequest(store_name=store, key=key))
        return reply.data, reply.etag

    async def save_state(self, store: str, *items: Item) -> None:
        await self.stub.SaveState(dstate.SaveStateRequest(store_name=store, states=[_dapr_item(i) for i in items]))

    async def delete_state(self, store: str, key: str, etag: str | None = None) -> None:
        request = dstate.DeleteStateRequest(store_name=store, key=key)
        if etag is not None:
            request.etag.value = etag
        await self.stub.DeleteState(request)

    async def bulk_get(self, store: str, keys: list[str]) -> list[tuple[str, bytes, str, str]]:
        reply = await self.stub.GetBulkState(dstate.GetBulkStateRequest(store_name=store, keys=keys))
        return [(i.key, i.data, i.etag, i.error) for i in reply.items]

    async def bulk_delete(self, store: str, *items: Item) -> None:
        request = dstate.DeleteBulkStateRequest(store_name=store, states=[_dapr_item(i) for i in items])
        await self.stub.DeleteBulkState(request)

    async def transaction(self, store: str, *operations: tuple[str, Item]) -> None:
        ops = [dstate.TransactionalStateOperation(operationType=kind, request=_dapr_item(i)) for kind, i in operations]
        await self.stub.ExecuteStateTransaction(dstate.ExecuteStateTransactionRequest(storeName=store, operations=ops))

    async def publish(
        self, pubsub: str, topic: str, data: bytes, content_type: str = "", metadata: dict[str, str] | None = None
    ) -> None:
        request = dpubsub.PublishEventRequest(
            pubsub_name=pubsub, topic=topic, data=data, data_content_type=content_type, metadata=metadata or {}
        )
        await self.stub.PublishEvent(request)

    async def try_lock(self, store: str, resource: str, owner: str, expire: int) -> bool:
        request = dlock.TryLockRequest(
            store_name=store, resource_id=resource, lock_owner=owner, expiry_in_seconds=expire
        )
        return bool((await self.stub.TryLockAlpha1(request)).success)

    async def unlock(self, store: str, resource: str, owner: str) -> str:
        request = dlock.UnlockRequest(store_name=store, resource_id=resource, lock_owner=owner)
        return dlock.UnlockResponse.Status.Name((await self.stub.UnlockAlpha1(request)).status)

    async def get_secret(self, store: str, key: str) -> dict[str, str]:
        return dict((await self.stub.GetSecret(dsecret.GetSecretRequest(store_name=store, key=key))).data)

    async def bulk_secret(self, store: str) -> dict[str, dict[str, str]]:
        reply = await self.stub.GetBulkSecret(dsecret.GetBulkSecretRequest(store_name=store))
        return {name: dict(values.secrets) for name, values in reply.data.items()}

    async def invoke_binding(
        self, name: str, operation: str, data: bytes = b"", metadata: dict[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        request = dbinding.InvokeBindingRequest(name=name, operation=operation, data=data, metadata=metadata or {})
        reply = await self.stub.InvokeBinding(request)
        return reply.data, dict(reply.metadata)

    async def get_configuration(self, store: str, keys: list[str]) -> dict[str, str]:
        reply = await self.stub.GetConfiguration(dconfig.GetConfigurationRequest(store_name=store, keys=keys))
        return {key: item.value for key, item in reply.items.items()}


def client(name: str, channel: grpc.aio.Channel) -> Api:
    return LayottoApi(channel) if name == LAYOTTO else DaprApi(channel)
