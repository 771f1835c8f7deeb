"""Every lock store through its block interface (no gRPC): try_lock/unlock semantics, and that
the declared features are the store's: keep_alive works where KEEP_ALIVE is declared and is
refused with UnsupportedError elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from layotto.components.lock.base import (
    KeepAliveRequest,
    LockFeature,
    LockStatus,
    LockStore,
    TryLockRequest,
    UnlockRequest,
)
from layotto.errors import UnsupportedError
from tests.contract.lock.backends import ROWS, Row, resource
from tests.support.rows import params


@pytest.fixture(scope="module", params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture(scope="module")
async def store(row: Row) -> AsyncIterator[LockStore]:
    component = await row.create()
    assert isinstance(component, LockStore)
    try:
        yield component
    finally:
        await component.close()


async def test_declares_exactly_the_rows_features(store: LockStore, row: Row) -> None:
    assert store.features == row.features
    assert all(isinstance(f, LockFeature) for f in store.features)


async def test_try_lock_and_unlock(store: LockStore) -> None:
    key = resource()
    assert await store.try_lock(TryLockRequest(key, "alice", 10))
    assert not await store.try_lock(TryLockRequest(key, "alice", 10)), "held: even its owner cannot take it again"
    assert not await store.try_lock(TryLockRequest(key, "bob", 10))
    assert await store.unlock(UnlockRequest(key, "bob")) == LockStatus.LOCK_BELONG_TO_OTHERS
    assert await store.unlock(UnlockRequest(key, "alice")) == LockStatus.SUCCESS
    assert await store.unlock(UnlockRequest(key, "alice")) == LockStatus.LOCK_UNEXIST
    assert await store.try_lock(TryLockRequest(key, "bob", 10))
    assert await store.unlock(UnlockRequest(key, "bob")) == LockStatus.SUCCESS


async def test_keep_alive_feature(store: LockStore, row: Row) -> None:
    key = resource()
    assert await store.try_lock(TryLockRequest(key, "alice", 10))
    try:
        if LockFeature.KEEP_ALIVE not in row.features:
            with pytest.raises(UnsupportedError) as refused:
                await store.keep_alive(KeepAliveRequest(key, "alice", 10))
            assert refused.value.feature == LockFeature.KEEP_ALIVE
            return
        assert await store.keep_alive(KeepAliveRequest(key, "alice", 30)) == LockStatus.SUCCESS
        assert await store.keep_alive(KeepAliveRequest(key, "bob", 30)) == LockStatus.LOCK_BELONG_TO_OTHERS
        assert not await store.try_lock(TryLockRequest(key, "bob", 10)), "a renewed lock is still held"
    finally:
        assert await store.unlock(UnlockRequest(key, "alice")) == LockStatus.SUCCESS
    assert await store.keep_alive(KeepAliveRequest(key, "alice", 30)) == LockStatus.LOCK_UNEXIST
