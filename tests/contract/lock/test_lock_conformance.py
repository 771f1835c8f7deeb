"""One suite for every lock component, through the gRPC API of an in-process sidecar."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.lock.backends import ROWS, Row, lock_config, resource
from tests.support.rows import params
from tests.support.sidecar import running_sidecar

STORE = "lock_store"
U = pb.UnlockResponse
K = pb.LockKeepAliveResponse
POLL = 0.05


@pytest.fixture(scope="module", params=params(ROWS))
async def stub(request: pytest.FixtureRequest) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    backend: Row = request.param
    async with (
        running_sidecar(lock_config(backend, STORE)) as (_, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        stub.min_ttl = backend.traits.min_ttl  # type: ignore[attr-defined]
        yield stub


async def try_lock(stub: runtime_pb2_grpc.RuntimeStub, rid: str, owner: str, expire: int = 10) -> bool:
    reply = await stub.TryLock(pb.TryLockRequest(store_name=STORE, resource_id=rid, lock_owner=owner, expire=expire))
    return reply.success


async def unlock(stub: runtime_pb2_grpc.RuntimeStub, rid: str, owner: str) -> int:
    return (await stub.Unlock(pb.UnlockRequest(store_name=STORE, resource_id=rid, lock_owner=owner))).status


async def keep_alive(stub: runtime_pb2_grpc.RuntimeStub, rid: str, owner: str, expire: int) -> int:
    request = pb.LockKeepAliveRequest(store_name=STORE, resource_id=rid, lock_owner=owner, expire=expire)
    return (await stub.LockKeepAlive(request)).status


#: The short lock of the expiry tests. Not 1 s: a redis_cluster lock must be taken on a majority
#: within a tenth of its expiry (upstream's drift allowance), and 100 ms is within reach of a
#: stall on a loaded 2-core machine (seen once in CI: UNAVAILABLE "no answer within the lock's
#: drift allowance" on all three nodes); 300 ms is not.
EXPIRY = 3


async def first_free(stub: runtime_pb2_grpc.RuntimeStub, rid: str, owner: str, deadline: float) -> float:
    """Poll TryLock by `owner` until it succeeds; the monotonic time it did."""
    while time.monotonic() < deadline:
        if await try_lock(stub, rid, owner):
            return time.monotonic()
        await asyncio.sleep(POLL)
    raise AssertionError(f"{rid} still held at the deadline")


async def test_try_lock_and_unlock_statuses(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    rid = resource()
    assert await try_lock(stub, rid, "alice")
    assert not await try_lock(stub, rid, "alice"), "re-lock by the same owner must fail"
    assert not await try_lock(stub, rid, "bob")
    assert await unlock(stub, rid, "bob") == U.LOCK_BELONG_TO_OTHERS
    assert await unlock(stub, rid, "alice") == U.SUCCESS
    assert await unlock(stub, rid, "alice") == U.LOCK_UNEXIST
    assert await try_lock(stub, rid, "bob")
    assert await unlock(stub, rid, "bob") == U.SUCCESS


async def test_locks_are_per_resource(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    first, second = resource(), resource()
    assert await try_lock(stub, first, "alice")
    assert await try_lock(stub, second, "bob")
    assert await unlock(stub, first, "alice") == U.SUCCESS
    assert await unlock(stub, second, "bob") == U.SUCCESS


async def test_lock_is_free_after_expiry_not_before(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    rid = resource()
    started = time.monotonic()
    assert await try_lock(stub, rid, "alice", expire=EXPIRY)
    assert not await try_lock(stub, rid, "bob")
    freed = await first_free(stub, rid, "bob", started + EXPIRY + 5)
    # Not before its expiry (a little slack for clock granularity), and not long after it.
    assert freed - started >= EXPIRY - 0.05, f"freed after {freed - started:.2f}s"
    assert await unlock(stub, rid, "alice") == U.LOCK_BELONG_TO_OTHERS
    assert await unlock(stub, rid, "bob") == U.SUCCESS


async def test_unlock_after_expiry_is_unexist(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    rid = resource()
    started = time.monotonic()
    assert await try_lock(stub, rid, "alice", expire=EXPIRY)
    # Seeing the expiry takes a successful TryLock; released again, the lock is simply absent.
    await first_free(stub, rid, "probe", started + EXPIRY + 7)
    assert await unlock(stub, rid, "probe") == U.SUCCESS
    assert await unlock(stub, rid, "alice") == U.LOCK_UNEXIST
    assert await keep_alive(stub, rid, "alice", 5) == K.LOCK_UNEXIST


async def test_keep_alive_extends_the_lock(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    rid = resource()
    started = time.monotonic()
    assert await try_lock(stub, rid, "alice", expire=EXPIRY)
    assert await keep_alive(stub, rid, "alice", 8) == K.SUCCESS
    # Past the original expiry the lock must still be held.
    while time.monotonic() - started < max(EXPIRY, stub.min_ttl) + 0.5:  # type: ignore[attr-defined]
        assert not await try_lock(stub, rid, "bob"), f"lost after {time.monotonic() - started:.2f}s"
        await asyncio.sleep(0.1)
    assert await keep_alive(stub, rid, "bob", 5) == K.LOCK_BELONG_TO_OTHERS
    assert await unlock(stub, rid, "alice") == U.SUCCESS
    assert await keep_alive(stub, rid, "alice", 5) == K.LOCK_UNEXIST


async def test_keep_alive_can_shorten_the_lock(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    rid = resource()
    assert await try_lock(stub, rid, "alice", expire=60)
    extended = time.monotonic()
    assert await keep_alive(stub, rid, "alice", 1) == K.SUCCESS
    freed = await first_free(stub, rid, "bob", extended + 6)
    assert freed - extended >= 0.9
    assert await unlock(stub, rid, "bob") == U.SUCCESS


async def _fails(call: object, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert (caught.value.code(), caught.value.details()) == (code, message)


@pytest.mark.parametrize("rpc", ["TryLock", "LockKeepAlive", "Unlock"])
async def test_validation_in_upstream_order(stub: runtime_pb2_grpc.RuntimeStub, rpc: str) -> None:
    bad = grpc.StatusCode.INVALID_ARGUMENT
    request_type = {"TryLock": pb.TryLockRequest, "LockKeepAlive": pb.LockKeepAliveRequest}.get(rpc, pb.UnlockRequest)
    call = getattr(stub, rpc)
    expiring = rpc != "Unlock"

    def request(**fields: object) -> object:
        if not expiring:
            fields.pop("expire", None)
        return request_type(**fields)

    # Empty resource id is reported before anything else, unknown store last.
    await _fails(call(request(store_name="nope", expire=0)), bad, "ResourceId is empty in lock store nope")
    no_owner = request(store_name="nope", resource_id="r", expire=0)
    await _fails(call(no_owner), bad, "LockOwner is empty in lock store nope")
    if expiring:
        for expire in (0, -5):
            await _fails(
                call(request(store_name="nope", resource_id="r", lock_owner="o", expire=expire)),
                bad,
                "Expire is not positive in lock store nope",
            )
    unknown_store = request(store_name="nope", resource_id="r", lock_owner="o", expire=5)
    await _fails(call(unknown_store), bad, "lock store nope not found")
    await _fails(
        call(request(store_name=STORE, resource_id="a||b", lock_owner="o", expire=5)),
        grpc.StatusCode.UNKNOWN,
        "input key/keyPrefix 'a||b' can't contain '||'",
    )


async def test_without_lock_stores_every_rpc_fails_precondition() -> None:
    async with (
        running_sidecar({"app": {"app_id": "x"}}) as (_, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        expected = (grpc.StatusCode.FAILED_PRECONDITION, "lock store is not configured")
        for call in (
            stub.TryLock(pb.TryLockRequest(store_name=STORE, resource_id="r", lock_owner="o", expire=1)),
            stub.Unlock(pb.UnlockRequest()),
            stub.LockKeepAlive(pb.LockKeepAliveRequest()),
        ):
            await _fails(call, *expected)
