"""Lock API: TryLock, Unlock and LockKeepAlive with upstream Layotto's checks, codes and messages."""

from __future__ import annotations

import grpc

from layotto.api.common import failure_code
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components import keyprefix
from layotto.components.lock.base import (
    KeepAliveRequest,
    LockStore,
    TryLockRequest,
    UnlockRequest,
)
from layotto.errors import ComponentError
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb

STRATEGY_KEY = "keyPrefix"
_API_PREFIX = "lock|||"
_SEPARATOR = keyprefix.SEPARATOR


def _check_key(key: str) -> str | None:
    if _SEPARATOR in key:
        return f"input key/keyPrefix '{key}' can't contain '{_SEPARATOR}'"
    return None


def lock_key(strategy: str, resource_id: str, store_name: str, app_id: str) -> str:
    """Upstream's stored key for `keyPrefix` strategy appid (default), name, none or a literal."""
    if strategy == "appid" and not app_id:
        # Upstream keeps the bare id (without `lock|||`) when no app id is configured.
        return resource_id
    return _API_PREFIX + keyprefix.key_prefix(strategy, store_name, app_id) + resource_id


def _strategy(raw: object, store_name: str) -> str:
    return keyprefix.lock_style_strategy(raw, f"lock.{store_name}.metadata.{STRATEGY_KEY}")


def _failure_code(exc: ComponentError) -> grpc.StatusCode:
    # Upstream passes component errors through as plain errors (code Unknown).
    return failure_code(exc, grpc.StatusCode.UNKNOWN)


class LockApi(ApiBase):
    _lock_stores: dict[str, tuple[LockStore, str]]

    async def start_api(self) -> None:
        self._lock_stores = {}
        for name, component in self.rt.components("lock").items():
            if isinstance(component, LockStore):
                spec = self.rt.spec("lock", name)
                raw = spec.metadata.get(STRATEGY_KEY, "") if spec else ""
                self._lock_stores[name] = (component, _strategy(raw, name))

    async def _validated(
        self, store_name: str, resource_id: str, owner: str, expire: int | None, context: Ctx
    ) -> tuple[LockStore, str]:
        """The store and stored key, after upstream's checks in upstream's order."""
        stores: dict[str, tuple[LockStore, str]] = getattr(self, "_lock_stores", {})
        if not stores:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "lock store is not configured")
        if not resource_id:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"ResourceId is empty in lock store {store_name}")
        if not owner:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"LockOwner is empty in lock store {store_name}")
        if expire is not None and expire <= 0:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Expire is not positive in lock store {store_name}")
        found = stores.get(store_name)
        if found is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"lock store {store_name} not found")
        store, strategy = found
        problem = _check_key(resource_id)
        if problem:
            await abort(context, grpc.StatusCode.UNKNOWN, problem)
        return store, lock_key(strategy, resource_id, store_name, self.rt.app_id)

    async def TryLock(self, request: pb.TryLockRequest, context: Ctx) -> pb.TryLockResponse:
        store, key = await self._validated(
            request.store_name, request.resource_id, request.lock_owner, request.expire, context
        )
        try:
            success = await store.try_lock(TryLockRequest(key, request.lock_owner, request.expire))
        except ComponentError as exc:
            await abort(context, _failure_code(exc), str(exc))
        return pb.TryLockResponse(success=success)

    async def Unlock(self, request: pb.UnlockRequest, context: Ctx) -> pb.UnlockResponse:
        store, key = await self._validated(request.store_name, request.resource_id, request.lock_owner, None, context)
        try:
            status = await store.unlock(UnlockRequest(key, request.lock_owner))
        except ComponentError as exc:
            await abort(context, _failure_code(exc), str(exc))
        return pb.UnlockResponse(status=int(status))  # type: ignore[arg-type]

    async def LockKeepAlive(self, request: pb.LockKeepAliveRequest, context: Ctx) -> pb.LockKeepAliveResponse:
        store, key = await self._validated(
            request.store_name, request.resource_id, request.lock_owner, request.expire, context
        )
        try:
            status = await store.keep_alive(KeepAliveRequest(key, request.lock_owner, request.expire))
        except ComponentError as exc:
            await abort(context, _failure_code(exc), str(exc))
        return pb.LockKeepAliveResponse(status=int(status))  # type: ignore[arg-type]
