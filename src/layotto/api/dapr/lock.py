"""Dapr's distributed lock API (TryLockAlpha1, UnlockAlpha1) on the lock components.

Locks are stored under the Layotto API's key layout (the store's `keyPrefix` strategy), so a
lock taken through one API is seen as held through the other.
"""

from __future__ import annotations

import grpc
from dapr.proto.runtime.v1 import lock_pb2 as pb

from layotto.api.dapr.base import ApiBase, Ctx, abort, code_of
from layotto.api.layotto.lock import STRATEGY_KEY, lock_key
from layotto.components.lock.base import LockStatus, LockStore, TryLockRequest, UnlockRequest
from layotto.errors import ComponentError

_SEPARATOR = "||"
_UNLOCK_STATUS = {
    LockStatus.SUCCESS: pb.UnlockResponse.SUCCESS,
    LockStatus.LOCK_UNEXIST: pb.UnlockResponse.LOCK_DOES_NOT_EXIST,
    LockStatus.LOCK_BELONG_TO_OTHERS: pb.UnlockResponse.LOCK_BELONGS_TO_OTHERS,
    LockStatus.INTERNAL_ERROR: pb.UnlockResponse.INTERNAL_ERROR,
}


class DaprLockApi(ApiBase):
    _dapr_locks: dict[str, tuple[LockStore, str]]

    async def start_api(self) -> None:
        self._dapr_locks = {}
        for name, component in self.rt.components("lock").items():
            if isinstance(component, LockStore):
                spec = self.rt.spec("lock", name)
                # Read as the Layotto API reads it (it validated the value at its start).
                strategy = str(spec.metadata.get(STRATEGY_KEY, "") if spec else "").lower() or "appid"
                self._dapr_locks[name] = (component, strategy)

    async def _lock_target(
        self, store_name: str, resource_id: str, owner: str, expiry: int | None, context: Ctx
    ) -> tuple[LockStore, str]:
        stores: dict[str, tuple[LockStore, str]] = getattr(self, "_dapr_locks", {})
        if not stores:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "lock store is not configured")
        if not resource_id:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"ResourceId is empty in lock store {store_name}")
        if not owner:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"LockOwner is empty in lock store {store_name}")
        if expiry is not None and expiry <= 0:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"ExpiryInSeconds is not positive in lock store {store_name}"
            )
        found = stores.get(store_name)
        if found is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"lock store {store_name} not found")
        if _SEPARATOR in resource_id:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input key/keyPrefix '{resource_id}' can't contain '{_SEPARATOR}'",
            )
        store, strategy = found
        return store, lock_key(strategy, resource_id, store_name, self.rt.app_id)

    async def TryLockAlpha1(self, request: pb.TryLockRequest, context: Ctx) -> pb.TryLockResponse:
        store, key = await self._lock_target(
            request.store_name, request.resource_id, request.lock_owner, request.expiry_in_seconds, context
        )
        try:
            ok = await store.try_lock(TryLockRequest(key, request.lock_owner, request.expiry_in_seconds))
        except ComponentError as exc:
            await abort(context, code_of(exc), f"failed to try acquiring lock: {exc}")
        return pb.TryLockResponse(success=ok)

    async def UnlockAlpha1(self, request: pb.UnlockRequest, context: Ctx) -> pb.UnlockResponse:
        store, key = await self._lock_target(request.store_name, request.resource_id, request.lock_owner, None, context)
        try:
            status = await store.unlock(UnlockRequest(key, request.lock_owner))
        except ComponentError as exc:
            await abort(context, code_of(exc), f"failed to release lock: {exc}")
        return pb.UnlockResponse(status=_UNLOCK_STATUS.get(status, pb.UnlockResponse.INTERNAL_ERROR))
