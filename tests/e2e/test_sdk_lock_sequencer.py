"""The Python SDK against a running sidecar: Lock (with the lock context manager) and Sequencer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from layotto_sdk import AsyncClient, Client, LayottoError, LockNotAcquired, LockStatus

from tests.support.services import require
from tests.support.sidecar import running_sidecar

CONFIG = {
    "app": {"app_id": "sdk-e2e"},
    "lock": {"redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}}},
    "sequencer": {
        "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}},
        "mem": {"type": "in-memory"},
    },
}
STORE = "redis"


@pytest.fixture(scope="module")
async def address() -> AsyncIterator[str]:
    require("redis")
    async with running_sidecar(CONFIG) as (_, addr):
        yield addr


@pytest.fixture
async def client(address: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(address, timeout=10) as c:
        yield c


def _name() -> str:
    return f"sdk-{uuid.uuid4().hex}"


async def _wait_until_free(client: AsyncClient, resource: str, deadline_s: float) -> str:
    """Poll until the lock expired (someone else can take it); returns that new owner."""
    other = _name()
    deadline = time.monotonic() + deadline_s
    while not await client.try_lock(STORE, resource, other, 30):
        assert time.monotonic() < deadline, "the lock never expired"
        await asyncio.sleep(0.1)
    return other


# ---- lock -------------------------------------------------------------------------------------


async def test_try_lock_unlock_statuses(client: AsyncClient) -> None:
    resource, a, b = _name(), _name(), _name()
    assert await client.try_lock(STORE, resource, a, 10)
    assert not await client.try_lock(STORE, resource, b, 10)
    assert not await client.try_lock(STORE, resource, a, 10)  # not re-entrant, as upstream
    assert await client.unlock(STORE, resource, b) == LockStatus.LOCK_BELONG_TO_OTHERS
    assert await client.lock_keep_alive(STORE, resource, a, 10) == LockStatus.SUCCESS
    assert await client.unlock(STORE, resource, a) == LockStatus.SUCCESS
    assert await client.unlock(STORE, resource, a) == LockStatus.LOCK_UNEXIST
    assert await client.try_lock(STORE, resource, b, 10)
    assert await client.unlock(STORE, resource, b) == LockStatus.SUCCESS


async def test_lock_errors(client: AsyncClient) -> None:
    cases = [
        (client.try_lock(STORE, "", "o", 1), f"ResourceId is empty in lock store {STORE}"),
        (client.try_lock(STORE, "r", "", 1), f"LockOwner is empty in lock store {STORE}"),
        (client.try_lock(STORE, "r", "o", 0), f"Expire is not positive in lock store {STORE}"),
        (client.unlock("nope", "r", "o"), "lock store nope not found"),
    ]
    for call, message in cases:
        with pytest.raises(LayottoError) as info:
            await call
        assert (info.value.code, info.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, message)


async def test_lock_context_manager_excludes_and_releases(client: AsyncClient) -> None:
    resource = _name()
    async with client.lock(STORE, resource, ttl=10) as lease:
        assert lease.owner and lease.resource == resource
        assert not await client.try_lock(STORE, resource, _name(), 10)
        with pytest.raises(LockNotAcquired):
            async with client.lock(STORE, resource, ttl=10):
                raise AssertionError("acquired a held lock")
        started = time.monotonic()
        with pytest.raises(LockNotAcquired) as info:
            async with client.lock(STORE, resource, ttl=10, wait=0.3, retry_interval=0.05):
                raise AssertionError("acquired a held lock")
        assert time.monotonic() - started >= 0.3
        assert info.value.resource == resource and "after waiting" in str(info.value)
    assert not lease.lost
    assert await client.try_lock(STORE, resource, _name(), 10)


async def test_lock_waits_for_the_holder(client: AsyncClient) -> None:
    resource = _name()
    acquired = asyncio.Event()

    async def hold_briefly() -> None:
        async with client.lock(STORE, resource, ttl=10):
            acquired.set()
            await asyncio.sleep(0.2)  # simulated work

    holder = asyncio.create_task(hold_briefly())
    await acquired.wait()
    async with client.lock(STORE, resource, ttl=10, wait=5, retry_interval=0.05) as lease:
        assert holder.done()
        assert await client.unlock(STORE, resource, _name()) == LockStatus.LOCK_BELONG_TO_OTHERS
    assert not lease.lost
    await holder


async def test_exceptions_in_the_block_still_release(client: AsyncClient) -> None:
    resource = _name()
    with pytest.raises(ZeroDivisionError):
        async with client.lock(STORE, resource, ttl=10):
            _ = 1 / 0
    assert await client.try_lock(STORE, resource, _name(), 10)


async def test_keep_alive_outlives_the_ttl(client: AsyncClient) -> None:
    resource = _name()
    async with client.lock(STORE, resource, ttl=1, keep_alive=True) as lease:
        await asyncio.sleep(1.6)  # simulated work, longer than the lease
        assert not await client.try_lock(STORE, resource, _name(), 10)
        assert not lease.lost
    assert not lease.lost
    assert await client.try_lock(STORE, resource, _name(), 10)


async def test_expired_lease_is_reported_lost_and_not_stolen_back(client: AsyncClient) -> None:
    resource = _name()
    async with client.lock(STORE, resource, ttl=1) as lease:
        other = await _wait_until_free(client, resource, 5)
    assert lease.lost
    # Exiting must not have released the new owner's lock.
    assert await client.unlock(STORE, resource, other) == LockStatus.SUCCESS


def _sync_lock_scenario(address: str) -> None:
    resource = _name()
    with Client(address, timeout=10) as client:
        with client.lock(STORE, resource, ttl=1, keep_alive=True) as lease:
            time.sleep(1.5)  # simulated work, longer than the lease
            assert not client.try_lock(STORE, resource, _name(), 10)
            with pytest.raises(LockNotAcquired):
                with client.lock(STORE, resource, ttl=5, wait=0.2, retry_interval=0.05):
                    raise AssertionError("acquired a held lock")
        assert not lease.lost
        owner = _name()
        assert client.try_lock(STORE, resource, owner, 10)
        assert client.unlock(STORE, resource, owner) == LockStatus.SUCCESS


async def test_sync_lock_context_manager(address: str) -> None:
    await asyncio.to_thread(_sync_lock_scenario, address)


# ---- sequencer --------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["redis", "mem"])
async def test_ids_increase_weak_and_strong(client: AsyncClient, store: str) -> None:
    key = _name()
    weak = [await client.get_next_id(store, key) for _ in range(5)]
    strong = [await client.get_next_id(store, key, strong=True) for _ in range(5)]
    ids = weak + strong
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert ids == sorted(set(ids)), ids
    assert strong == list(range(strong[0], strong[0] + 5))
    assert await client.get_next_id(store, _name(), strong=True) == 1


async def test_sequencer_errors(client: AsyncClient) -> None:
    with pytest.raises(LayottoError) as info:
        await client.get_next_id("redis", "")
    assert (info.value.code, info.value.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Key is empty in sequencer store redis",
    )
    with pytest.raises(LayottoError) as info:
        await client.get_next_id("nope", "k")
    assert (info.value.code, info.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, "Sequencer store nope not found")


def _sync_sequencer(address: str) -> list[int]:
    key = _name()
    with Client(address) as client:
        return [client.get_next_id("redis", key, strong=True) for _ in range(3)]


async def test_sync_sequencer(address: str) -> None:
    assert await asyncio.to_thread(_sync_sequencer, address) == [1, 2, 3]
