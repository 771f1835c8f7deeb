"""Lock API: TryLock, Unlock and LockKeepAlive with upstream Layotto's codes and messages."""

from __future__ import annotations

import grpc

from layotto.api.common import Answering, Ctx, answered, failure_code
from layotto.api.lock import lock_answers
from layotto.core.lock import LockCore
from layotto.core.lock import LockProblem as P
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

Code = grpc.StatusCode


def _failure_code(exc: BaseException) -> grpc.StatusCode:
    # Upstream passes component errors through as plain errors (code Unknown).
    return failure_code(exc, Code.UNKNOWN)


class LockApi(Answering[LockCore]):
    ANSWERS = lock_answers(
        "Expire",
        Code.UNKNOWN,
        {
            P.TRY_LOCK_FAILED: (_failure_code, "{error}"),
            P.UNLOCK_FAILED: (_failure_code, "{error}"),
            P.KEEP_ALIVE_FAILED: (_failure_code, "{error}"),
        },
    )


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
