"""The Lock block: checks in upstream's order, the stored key layout, calls to the lock store.

A lock is stored under `lock|||<keyPrefix prefix><resource id>`, so a lock taken through one
API is held through every other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from layotto.components import keyprefix
from layotto.components.lock.base import (
    KeepAliveRequest,
    LockFeature,
    LockStatus,
    LockStore,
    TryLockRequest,
    UnlockRequest,
)
from layotto.core.problems import Checks, Problem, guarded

__all__ = ["STRATEGY_KEY", "BoundLock", "LockCore", "LockProblem", "bind_locks", "lock_key"]

#: The component metadata key naming the key prefix strategy.
STRATEGY_KEY = "keyPrefix"
_API_PREFIX = "lock|||"
_SEPARATOR = keyprefix.SEPARATOR


class LockProblem(Enum):
    NO_STORES = "no lock store is configured"
    RESOURCE_EMPTY = "resource id is empty"  # facts: store
    OWNER_EMPTY = "lock owner is empty"  # facts: store
    EXPIRE_NOT_POSITIVE = "expiry is not positive"  # facts: store
    STORE_NOT_FOUND = "lock store not found"  # facts: store
    KEY_HAS_SEPARATOR = "resource id contains the separator"  # facts: key, separator
    TRY_LOCK_FAILED = "try lock failed"  # facts: store
    UNLOCK_FAILED = "unlock failed"  # facts: store
    KEEP_ALIVE_FAILED = "keep alive failed"  # facts: store
    KEEP_ALIVE_UNSUPPORTED = "store cannot extend a lock"  # facts: store


def lock_key(strategy: str, resource_id: str, store_name: str, app_id: str) -> str:
    """Upstream's stored key for `keyPrefix` strategy appid (default), name, none or a literal."""
    if strategy == "appid" and not app_id:
        # Upstream keeps the bare id (without `lock|||`) when no app id is configured.
        return resource_id
    return _API_PREFIX + keyprefix.key_prefix(strategy, store_name, app_id) + resource_id


@dataclass(frozen=True, slots=True)
class BoundLock:
    store: LockStore
    strategy: str


def bind_locks(stores: Mapping[str, LockStore], strategies: Mapping[str, object]) -> dict[str, BoundLock]:
    """name -> store with its validated `keyPrefix` strategy (a ConfigError names a bad one)."""
    return {
        name: BoundLock(
            store,
            keyprefix.lock_style_strategy(strategies.get(name, ""), f"lock.{name}.metadata.{STRATEGY_KEY}"),
        )
        for name, store in stores.items()
    }


class LockCore:
    """Locks for one API: built with the `Checks` that API makes."""

    def __init__(self, stores: Mapping[str, BoundLock], app_id: str, checks: Checks) -> None:
        self._stores = stores
        self._app_id = app_id
        self._checks = checks

    def _target(self, store_name: str, resource_id: str, owner: str, expire: int | None) -> tuple[LockStore, str]:
        bound = self._stores.get(store_name)
        if bound is None or not resource_id or not owner or (expire is not None and expire <= 0):
            found = []
            if not self._stores:
                found.append(Problem(LockProblem.NO_STORES))
            if not resource_id:
                found.append(Problem(LockProblem.RESOURCE_EMPTY, store=store_name))
            if not owner:
                found.append(Problem(LockProblem.OWNER_EMPTY, store=store_name))
            if expire is not None and expire <= 0:
                found.append(Problem(LockProblem.EXPIRE_NOT_POSITIVE, store=store_name))
            if bound is None:
                found.append(Problem(LockProblem.STORE_NOT_FOUND, store=store_name))
            self._checks.refuse(found)
            if bound is None:
                raise found[-1]
        if _SEPARATOR in resource_id:
            self._checks.refuse([Problem(LockProblem.KEY_HAS_SEPARATOR, key=resource_id, separator=_SEPARATOR)])
        return bound.store, lock_key(bound.strategy, resource_id, store_name, self._app_id)

    async def try_lock(self, store_name: str, resource_id: str, owner: str, expire: int) -> bool:
        store, key = self._target(store_name, resource_id, owner, expire)
        return await guarded(
            store.try_lock(TryLockRequest(key, owner, expire)), LockProblem.TRY_LOCK_FAILED, store=store_name
        )

    async def unlock(self, store_name: str, resource_id: str, owner: str) -> LockStatus:
        store, key = self._target(store_name, resource_id, owner, None)
        return await guarded(store.unlock(UnlockRequest(key, owner)), LockProblem.UNLOCK_FAILED, store=store_name)

    async def keep_alive(self, store_name: str, resource_id: str, owner: str, expire: int) -> LockStatus:
        store, key = self._target(store_name, resource_id, owner, expire)
        if LockFeature.KEEP_ALIVE not in store.features:
            raise Problem(LockProblem.KEEP_ALIVE_UNSUPPORTED, store=store_name)
        call = store.keep_alive(KeepAliveRequest(key, owner, expire))
        return await guarded(call, LockProblem.KEEP_ALIVE_FAILED, store=store_name)
