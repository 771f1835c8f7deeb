"""The etcd components on a 3-member etcd cluster, through two sidecar processes, while its
leader is SIGKILLed in the middle of lock contention, id generation and configuration writes.

The sidecars list the leader first, so they start on the member that dies and must move on
to another one by themselves. Checked across the crash:
- lock: 2 sidecars x 10 clients on one resource never see two holders;
- sequencer: ids from both sidecars stay unique, each client's increasing;
- configuration: a subscriber on each sidecar gets every change that was acknowledged (its
  watch resumes from the last revision it saw, on the next member);
- what fails meanwhile fails as UNAVAILABLE; each kind of call works again within 30 s, and
  how long that took is printed (docs/scaling.md quotes it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.etcd_cluster import EtcdCluster
from tests.support.sidecar import SidecarProcess

T = TypeVar("T")

RUN = uuid.uuid4().hex[:8]
APP_ID = f"etcd-scale-{RUN}"
LOCK, SEQ, CONFIG = "lock", "seq", "config"
KEY = "k"
RECOVERY_LIMIT = 30.0
CALL_DEADLINE = 15.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    members = EtcdCluster(3).start()
    try:
        yield members
    finally:
        members.stop()


@pytest.fixture(scope="module")
async def stubs(cluster: EtcdCluster) -> AsyncIterator[list[runtime_pb2_grpc.RuntimeStub]]:
    leader = cluster.wait_leader()
    endpoints = [cluster.endpoints[leader], *(e for i, e in enumerate(cluster.endpoints) if i != leader)]
    listed = ",".join(endpoints)
    config = {
        "app": {"app_id": APP_ID},
        "lock": {LOCK: {"type": "etcd", "metadata": {"endpoints": listed, "keyPrefixPath": f"/l-{RUN}/"}}},
        "sequencer": {SEQ: {"type": "etcd", "metadata": {"endpoints": listed, "keyPrefixPath": f"/s-{RUN}/"}}},
        "config_store": {CONFIG: {"type": "etcd", "metadata": {"address": endpoints, "timeout": "5"}}},
    }
    procs = [SidecarProcess(config, actuator=False) for _ in range(2)]
    channels: list[grpc.aio.Channel] = []
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        channels = [grpc.aio.insecure_channel(p.address) for p in procs]
        yield [runtime_pb2_grpc.RuntimeStub(c) for c in channels]
    finally:
        for channel in channels:
            await channel.close()
        await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in procs if p.proc is not None))


@dataclass
class Kind:
    """The calls of one kind: when each succeeded and how each failure was answered."""

    name: str
    ok: list[tuple[float, float]] = field(default_factory=list)  # (started, ended)
    failures: list[str] = field(default_factory=list)

    def recovery(self, killed: float) -> float | None:
        """Seconds from the crash until a call started after it succeeded."""
        ends = [end for start, end in self.ok if start >= killed]
        return min(ends) - killed if ends else None


async def _call(kind: Kind, call: Awaitable[T]) -> tuple[bool, T | None]:
    """(succeeded, reply) of `call`, recorded in `kind`."""
    started = time.monotonic()
    try:
        reply = await call
    except grpc.aio.AioRpcError as exc:
        kind.failures.append(exc.code().name)
        await asyncio.sleep(0.05)  # a client backing off
        return False, None
    kind.ok.append((started, time.monotonic()))
    return True, reply


class Subscriber:
    def __init__(self, stub: runtime_pb2_grpc.RuntimeStub) -> None:
        self.requests: asyncio.Queue[pb.SubscribeConfigurationRequest] = asyncio.Queue()
        self.call = stub.SubscribeConfiguration(self._requests())
        self.seen: list[str] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[pb.SubscribeConfigurationRequest]:
        while True:
            yield await self.requests.get()

    async def _read(self) -> None:
        async for reply in self.call:
            self.seen += [i.content for i in reply.items if i.key == KEY]
            self.changed.set()

    async def close(self) -> None:
        self.call.cancel()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def _save(stub: runtime_pb2_grpc.RuntimeStub, content: str) -> None:
    item = pb.ConfigurationItem(key=KEY, content=content)
    await stub.SaveConfiguration(pb.SaveConfigurationRequest(store_name=CONFIG, app_id=APP_ID, items=[item]))


async def _subscribed(stub: runtime_pb2_grpc.RuntimeStub, subscribers: list[Subscriber]) -> None:
    """Subscribe, then write probes until every subscriber got one (the RPC has no ack)."""
    for sub in subscribers:
        await sub.requests.put(pb.SubscribeConfigurationRequest(store_name=CONFIG, app_id=APP_ID, keys=[KEY]))
    deadline = time.monotonic() + 10
    for n in itertools.count():
        await _save(stub, f"probe-{n}")
        waits = [asyncio.ensure_future(s.changed.wait()) for s in subscribers if not s.seen]
        if not waits:
            return
        await asyncio.wait(waits, timeout=0.2)
        for w in waits:
            w.cancel()
        assert time.monotonic() < deadline, "the subscriptions never got a change"


async def test_a_leader_crash_loses_no_lock_id_or_change(
    cluster: EtcdCluster, stubs: list[runtime_pb2_grpc.RuntimeStub]
) -> None:
    locks, ids, saves = Kind("lock"), Kind("sequencer"), Kind("configuration save")
    stop = asyncio.Event()
    holders, most, acquired = 0, 0, 0
    sequences: list[list[int]] = []
    acked: list[str] = []
    resource = f"res-{RUN}"

    async def locker(stub: runtime_pb2_grpc.RuntimeStub) -> None:
        nonlocal holders, most, acquired
        owner = uuid.uuid4().hex
        while not stop.is_set():
            request = pb.TryLockRequest(store_name=LOCK, resource_id=resource, lock_owner=owner, expire=5)
            _, got = await _call(locks, stub.TryLock(request, timeout=CALL_DEADLINE))
            if got is None or not got.success:
                await asyncio.sleep(0.005)
                continue
            holders += 1
            most, acquired = max(most, holders), acquired + 1
            await asyncio.sleep(0.002)
            holders -= 1
            release = pb.UnlockRequest(store_name=LOCK, resource_id=resource, lock_owner=owner)
            for _ in range(100):  # an unlock lost to the crash is sent again: the owner must let go
                freed, _ = await _call(locks, stub.Unlock(release, timeout=CALL_DEADLINE))
                if freed:
                    break

    async def drawer(stub: runtime_pb2_grpc.RuntimeStub) -> None:
        mine: list[int] = []
        sequences.append(mine)
        request = pb.GetNextIdRequest(store_name=SEQ, key="ids")
        while not stop.is_set():
            _, reply = await _call(ids, stub.GetNextId(request, timeout=CALL_DEADLINE))
            if reply is not None:
                mine.append(int(reply.next_id))

    async def writer(stub: runtime_pb2_grpc.RuntimeStub) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            content = f"v{n}"
            saved, _ = await _call(saves, _save(stub, content))
            if saved:
                acked.append(content)

    subscribers = [Subscriber(stub) for stub in stubs]
    try:
        await _subscribed(stubs[0], subscribers)
        tasks = [
            *(asyncio.create_task(locker(stubs[i % 2])) for i in range(20)),
            *(asyncio.create_task(drawer(stubs[i % 2])) for i in range(10)),
            asyncio.create_task(writer(stubs[1])),
        ]
        try:
            await asyncio.sleep(1.5)  # steady state before the crash
            assert locks.ok and ids.ok and saves.ok, "nothing succeeded before the crash"
            leader = cluster.leader()
            assert leader is not None
            killed = time.monotonic()
            cluster.kill(leader)
            election = asyncio.ensure_future(asyncio.to_thread(lambda: (cluster.wait_leader(), time.monotonic())[1]))
            kinds = (locks, ids, saves)
            while any(k.recovery(killed) is None for k in kinds):
                assert time.monotonic() - killed < RECOVERY_LIMIT, {k.name: k.failures[-3:] for k in kinds}
                await asyncio.sleep(0.05)
            elected = await election - killed
            await asyncio.sleep(1.5)  # and they keep working on the new leader
        finally:
            stop.set()
            await asyncio.gather(*tasks)

        # Every acknowledged change reached both subscribers (in order, after the probes).
        deadline = time.monotonic() + 10
        while any(not set(acked) <= set(s.seen) for s in subscribers):
            assert time.monotonic() < deadline, [sorted(set(acked) - set(s.seen))[:5] for s in subscribers]
            await asyncio.sleep(0.05)
    finally:
        for sub in subscribers:
            await sub.close()

    assert most == 1, f"{most} holders of one lock at once"
    every = [i for seq in sequences for i in seq]
    assert len(every) == len(set(every)), f"{len(every) - len(set(every))} duplicate ids"
    for seq in sequences:
        assert all(b > a for a, b in itertools.pairwise(seq)), "a client saw its ids go down"
    for kind in kinds:
        assert set(kind.failures) <= {"UNAVAILABLE"}, f"{kind.name} failed otherwise: {set(kind.failures)}"
    print(
        f"\n[etcd leader crash] new leader elected after {elected:.2f}s; back after the SIGKILL: "
        + ", ".join(f"{k.name} {k.recovery(killed):.2f}s ({len(k.failures)} calls failed)" for k in kinds)
        + f"; {acquired} lock acquisitions (never two holders), {len(every)} ids (no duplicate), "
        f"{len(acked)} config changes (all pushed to both subscribers)"
    )
