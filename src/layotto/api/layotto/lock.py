"""Lock API: TryLock, Unlock and LockKeepAlive (answers in answers.toml)."""

from __future__ import annotations

from layotto.api.common import Answering, Ctx, answered
from layotto.core.lock import LockCore
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class LockApi(Answering[LockCore]):
    @answered
    async def TryLock(self, request: pb.TryLockRequest, context: Ctx) -> pb.TryLockResponse:
        ok = await self.core.try_lock(request.store_name, request.resource_id, request.lock_owner, request.expire)
        return pb.TryLockResponse(success=ok)

    @answered
    async def Unlock(self, request: pb.UnlockRequest, context: Ctx) -> pb.UnlockResponse:
        status = await self.core.unlock(request.store_name, request.resource_id, request.lock_owner)
        return pb.UnlockResponse(status=int(status))  # type: ignore[arg-type]

    @answered
    async def LockKeepAlive(self, request: pb.LockKeepAliveRequest, context: Ctx) -> pb.LockKeepAliveResponse:
        status = await self.core.keep_alive(request.store_name, request.resource_id, request.lock_owner, request.expire)
        return pb.LockKeepAliveResponse(status=int(status))  # type: ignore[arg-type]
