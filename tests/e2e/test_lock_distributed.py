"""Locks across real sidecar processes: mutual exclusion under contention, and expiry after a crash.

For each distributed backend three sidecars share the backend. 30 clients (10 per sidecar)
hammer one resource; inside the lock each does a NON-atomic read-then-write of a Redis
counter, so any overlap of two holders loses an increment and the final counter falls
short of the number of successful acquisitions.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import redis.asyncio as aioredis

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.lock.backends import DISTRIBUTED, Row, lock_config, resource
from tests.support.rows import params
from tests.support.services import require
from tests.support.sidecar import SidecarProcess

STORE = "lock_store"
CLIENTS = 30
RUN_FOR = 3.0
#: Figures per backend, printed at the end of the session (pytest -s shows them).
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module", params=params(DISTRIBUTED))
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[Row, list[SidecarProcess]]]:
    backend: Row = request.param
    config = lock_config(backend, STORE)
    procs = [SidecarProcess(config, actuator=False) for _ in range(3)]
    try:
        # Started side by side: each takes a few seconds to import and connect.
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(lambda p: p.start(), procs))
        yield backend, procs
    finally:
        for proc in procs:
            if proc.proc is not None:
                proc.terminate()


async def _client(address: str, rid: str, counter: str, deadline: float, rdb: aioredis.Redis) -> int:
    acquired = 0
    owner = uuid.uuid4().hex
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        while time.monotonic() < deadline:
            got = await stub.TryLock(pb.TryLockRequest(store_name=STORE, resource_id=rid, lock_owner=owner, expire=10))
            if not got.success:
                await asyncio.sleep(random.uniform(0.005, 0.02))
                continue
            acquired += 1
            value = int(await rdb.get(counter) or 0)
            await rdb.set(counter, value + 1)
            released = await stub.Unlock(pb.UnlockRequest(store_name=STORE, resource_id=rid, lock_owner=owner))
            assert released.status == pb.UnlockResponse.SUCCESS
    return acquired


async def test_mutual_exclusion_under_contention(cluster: tuple[Row, list[SidecarProcess]]) -> None:
    backend, procs = cluster
    require("redis")
    rid = resource()
    counter = f"layotto-test:lock-counter:{uuid.uuid4().hex}"
    rdb = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        started = time.monotonic()
        deadline = started + RUN_FOR
        counts = await asyncio.gather(
            *(_client(procs[i % len(procs)].address, rid, counter, deadline, rdb) for i in range(CLIENTS))
        )
        elapsed = time.monotonic() - started
        total = sum(counts)
        final = int(await rdb.get(counter) or 0)
    finally:
        await rdb.delete(counter)
        await rdb.aclose()
    FIGURES[backend.type] = f"{total} acquisitions in {elapsed:.1f}s = {total / elapsed:.0f}/s"
    print(f"\n[lock contention] {backend.type}: {FIGURES[backend.type]}")
    assert total > 10, f"too few acquisitions to mean anything: {counts}"
    assert final == total, f"{total - final} increments lost: two holders overlapped"


async def test_lock_of_a_killed_holder_frees_at_expiry_not_before(
    cluster: tuple[Row, list[SidecarProcess]],
) -> None:
    backend, procs = cluster
    holder, survivor = procs[0], procs[1]
    rid = resource()
    expire = 2
    async with (
        grpc.aio.insecure_channel(holder.address) as holder_channel,
        grpc.aio.insecure_channel(survivor.address) as survivor_channel,
    ):
        started = time.monotonic()
        request = pb.TryLockRequest(store_name=STORE, resource_id=rid, lock_owner="doomed", expire=expire)
        assert (await runtime_pb2_grpc.RuntimeStub(holder_channel).TryLock(request)).success
        holder.kill()
        stub = runtime_pb2_grpc.RuntimeStub(survivor_channel)
        take = pb.TryLockRequest(store_name=STORE, resource_id=rid, lock_owner="heir", expire=expire)
        while not (await stub.TryLock(take)).success:
            assert time.monotonic() - started < expire + 5, "the dead holder's lock never expired"
            await asyncio.sleep(0.05)
        freed = time.monotonic() - started
        print(f"\n[lock expiry] {backend.type}: free {freed:.2f}s after TryLock with expire={expire}s")
        assert freed >= expire - 0.05, f"free after {freed:.2f}s, before its {expire}s expiry"
        release = pb.UnlockRequest(store_name=STORE, resource_id=rid, lock_owner="heir")
        assert (await stub.Unlock(release)).status == pb.UnlockResponse.SUCCESS
