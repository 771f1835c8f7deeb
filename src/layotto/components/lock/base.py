"""The Lock block's interface, shaped after upstream Layotto's lock.LockStore.

A lock is a (resource id, owner, expiry) triple held in a backend shared by every sidecar.
The API layer has already validated the request and turned the resource id into the stored
key (`lock|||<app_id>||<resource_id>` by default), so a store only sees opaque keys.

Semantics every store keeps:
- `try_lock` never waits: it returns True when the caller now holds the lock, False when the
  lock is held by anyone (the same owner included) and has not expired.
- `unlock` deletes the lock only when `owner` holds it.
- `keep_alive` (LockFeature.KEEP_ALIVE) sets the remaining life of a lock `owner` holds to
  `expire` seconds.
- A backend that cannot be reached raises BackendUnavailableError; other failures raise
  ComponentError. Neither changes the lock.
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from dataclasses import dataclass

from layotto.components.base import Component, Feature, unsupported


class LockStatus(enum.IntEnum):
    """The status of Unlock and LockKeepAlive; the numbers are upstream's wire values."""

    SUCCESS = 0
    LOCK_UNEXIST = 1
    LOCK_BELONG_TO_OTHERS = 2
    INTERNAL_ERROR = 3


@dataclass(frozen=True, slots=True)
class TryLockRequest:
    key: str
    owner: str
    #: Seconds; always > 0 (the API rejects anything else).
    expire: int


@dataclass(frozen=True, slots=True)
class UnlockRequest:
    key: str
    owner: str


@dataclass(frozen=True, slots=True)
class KeepAliveRequest:
    key: str
    owner: str
    #: The new remaining life in seconds, counted from now; always > 0.
    expire: int


class LockFeature(Feature):
    #: `keep_alive` renews a held lock (upstream's LockKeepAlive; Dapr's lock has no renewal).
    #: Without it, `keep_alive` raises UnsupportedError.
    KEEP_ALIVE = enum.auto()


class LockStore(Component):
    """Base of every lock component."""

    features: frozenset[LockFeature] = frozenset()

    @abstractmethod
    async def try_lock(self, request: TryLockRequest) -> bool:
        """Take the lock if it is free (absent or expired). Never blocks waiting for it."""

    @abstractmethod
    async def unlock(self, request: UnlockRequest) -> LockStatus:
        """SUCCESS, LOCK_UNEXIST (absent or expired) or LOCK_BELONG_TO_OTHERS."""

    async def keep_alive(self, request: KeepAliveRequest) -> LockStatus:
        """Extend a held lock: SUCCESS, LOCK_UNEXIST or LOCK_BELONG_TO_OTHERS (LockFeature.KEEP_ALIVE)."""
        raise unsupported(self, LockFeature.KEEP_ALIVE, "keep_alive")
