"""In-process lock store: per sidecar, lost on restart. For tests and single-sidecar demos."""

from __future__ import annotations

import time
from dataclasses import dataclass

from layotto.components.lock import base as lock


@dataclass(slots=True)
class _Held:
    owner: str
    expires_at: float


class InMemoryLock(lock.LockStore):
    metadata_keys = ()
    features = frozenset({lock.LockFeature.KEEP_ALIVE})

    def __init__(self) -> None:
        self._locks: dict[str, _Held] = {}

    def _live(self, key: str) -> _Held | None:
        held = self._locks.get(key)
        if held is not None and held.expires_at <= time.monotonic():
            del self._locks[key]
            return None
        return held

    # Nothing below awaits, so each operation is atomic with respect to the event loop.
    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        if self._live(request.key) is not None:
            return False
        self._locks[request.key] = _Held(request.owner, time.monotonic() + request.expire)
        return True

    def _held_by(self, key: str, owner: str) -> _Held | lock.LockStatus:
        """The lock `owner` holds on `key`, or why it holds none."""
        held = self._live(key)
        if held is None:
            return lock.LockStatus.LOCK_UNEXIST
        return held if held.owner == owner else lock.LockStatus.LOCK_BELONG_TO_OTHERS

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        held = self._held_by(request.key, request.owner)
        if isinstance(held, lock.LockStatus):
            return held
        del self._locks[request.key]
        return lock.LockStatus.SUCCESS

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        held = self._held_by(request.key, request.owner)
        if isinstance(held, lock.LockStatus):
            return held
        held.expires_at = time.monotonic() + request.expire
        return lock.LockStatus.SUCCESS
