"""Dapr's distributed lock API (TryLockAlpha1, UnlockAlpha1).

Locks are stored under the Layotto API's key layout (the store's `keyPrefix` strategy), so a
lock taken through one API is seen as held through the other.
"""

from __future__ import annotations

from layotto.api.common import Answering, Ctx, answered
from layotto.components.lock.base import LockStatus
from layotto.core.lock import LockCore
from layotto_proto.dapr.proto.runtime.v1 import lock_pb2 as pb

_UNLOCK_STATUS = {
    LockStatus.SUCCESS: pb.UnlockResponse.SUCCESS,
    LockStatus.LOCK_UNEXIST: pb.UnlockResponse.LOCK_DOES_NOT_EXIST,
    LockStatus.LOCK_BELONG_TO_OTHERS: pb.UnlockResponse.LOCK_BELONGS_TO_OTHERS,
    LockStatus.INTERNAL_ERROR: pb.UnlockResponse.INTERNAL_ERROR,
}


class DaprLockApi(Answering[LockCore]):
    @answered
    async def TryLockAlpha1(self, request: pb.TryLockRequest, context: Ctx) -> pb.TryLockResponse:
        ok = await self.core.try_lock(
            request.store_name, request.resource_id, request.lock_owner, request.expiry_in_seconds
        )
        return pb.TryLockResponse(success=ok)

    @answered
    async def UnlockAlpha1(self, request: pb.UnlockRequest, context: Ctx) -> pb.UnlockResponse:
        status = await self.core.unlock(request.store_name, request.resource_id, request.lock_owner)
        return pb.UnlockResponse(status=_UNLOCK_STATUS.get(status, pb.UnlockResponse.INTERNAL_ERROR))
