"""The lock API of both gRPC APIs (Layotto's TryLock/Unlock/LockKeepAlive, Dapr's
TryLockAlpha1/UnlockAlpha1) on the in-memory lock store: statuses in each API's enum, and the
exact code and message of every refusal, in each API's order of checks."""

from __future__ import annotations

import uuid

import grpc

from tests.api.clients import DAPR, LAYOTTO, Api, LayottoApi, client, failure
from tests.api.conftest import LOCK

C = grpc.StatusCode
#: Unlock statuses by meaning, in each API's own enum.
UNLOCKED = {LAYOTTO: "SUCCESS", DAPR: "SUCCESS"}
ABSENT = {LAYOTTO: "LOCK_UNEXIST", DAPR: "LOCK_DOES_NOT_EXIST"}
OTHERS = {LAYOTTO: "LOCK_BELONG_TO_OTHERS", DAPR: "LOCK_BELONGS_TO_OTHERS"}


def new_resource() -> str:
    return f"res-{uuid.uuid4().hex[:12]}"


async def test_try_lock_and_unlock(api: Api) -> None:
    rid = new_resource()
    assert await api.try_lock(LOCK, rid, "alice", 10)
    assert not await api.try_lock(LOCK, rid, "alice", 10)
    assert not await api.try_lock(LOCK, rid, "bob", 10)
    assert await api.unlock(LOCK, rid, "bob") == OTHERS[api.name]
    assert await api.unlock(LOCK, rid, "alice") == UNLOCKED[api.name]
    assert await api.unlock(LOCK, rid, "alice") == ABSENT[api.name]


async def test_a_lock_taken_through_one_api_is_held_for_the_other(api: Api, channel: grpc.aio.Channel) -> None:
    other = client(DAPR if api.name == LAYOTTO else LAYOTTO, channel)
    rid = new_resource()
    assert await api.try_lock(LOCK, rid, "alice", 10)
    assert not await other.try_lock(LOCK, rid, "bob", 10)
    assert await other.unlock(LOCK, rid, "alice") == UNLOCKED[other.name]


async def test_refusals_in_each_apis_order(api: Api) -> None:
    bad = C.INVALID_ARGUMENT
    expiry = {LAYOTTO: "Expire", DAPR: "ExpiryInSeconds"}[api.name]
    separator = {LAYOTTO: C.UNKNOWN, DAPR: C.INVALID_ARGUMENT}[api.name]
    cases = [
        (("nope", "", "", 0), (bad, "ResourceId is empty in lock store nope")),
        (("nope", "r", "", 0), (bad, "LockOwner is empty in lock store nope")),
        (("nope", "r", "o", 0), (bad, f"{expiry} is not positive in lock store nope")),
        (("nope", "r", "o", -5), (bad, f"{expiry} is not positive in lock store nope")),
        (("nope", "r", "o", 5), (bad, "lock store nope not found")),
        ((LOCK, "a||b", "o", 5), (separator, "input key/keyPrefix 'a||b' can't contain '||'")),
    ]
    for (store, rid, owner, expire), expected in cases:
        assert await failure(api.try_lock(store, rid, owner, expire)) == expected, (store, rid, owner, expire)
    assert await failure(api.unlock("nope", "", "")) == (bad, "ResourceId is empty in lock store nope")
    assert await failure(api.unlock("nope", "r", "o")) == (bad, "lock store nope not found")


async def test_no_lock_store_configured(empty: Api) -> None:
    expected = (C.FAILED_PRECONDITION, "lock store is not configured")
    assert await failure(empty.try_lock(LOCK, "r", "o", 5)) == expected
    assert await failure(empty.unlock(LOCK, "r", "o")) == expected


async def test_layotto_keep_alive(channel: grpc.aio.Channel) -> None:
    layotto = LayottoApi(channel)
    rid = new_resource()
    assert await layotto.try_lock(LOCK, rid, "alice", 5)
    assert await layotto.keep_alive(LOCK, rid, "alice", 30) == "SUCCESS"
    assert await layotto.keep_alive(LOCK, rid, "bob", 30) == "LOCK_BELONG_TO_OTHERS"
    assert await layotto.unlock(LOCK, rid, "alice") == "SUCCESS"
    assert await layotto.keep_alive(LOCK, rid, "alice", 30) == "LOCK_UNEXIST"
    assert await failure(layotto.keep_alive(LOCK, rid, "alice", 0)) == (
        C.INVALID_ARGUMENT,
        f"Expire is not positive in lock store {LOCK}",
    )
