"""Every redis component on a 3-master Redis Cluster (`redis-cli --cluster create`), through two
sidecar processes sharing it, as a deployment that outgrew one Redis would run them.

- state: 8 read-modify-write clients with etags over 2 sidecars end on the exact count; keys
  land on every master; a bulk get spans slots; a transaction within one slot is atomic under
  concurrent writers, one across slots is refused before anything is written;
- lock: 2 sidecars x 20 clients on one resource never see two holders;
- sequencer: 2 sidecars x 2,000 ids, no duplicate, each client's ids increasing;
- pub/sub: 500 events through a stream shared by the sidecars' consumer group, each delivered;
- the client follows MOVED (a stale slot table) and ASK (a slot mid-migration), and (marked
  slow, on a cluster of its own with replicas) a master failing over to its replica;
- and the state suites of tests/contract/state run on the cluster as on one server, except
  their transactions over unrelated keys (a cluster refuses those: see the tests here).

The cluster is the process's shared one (tests/support/redis_cluster.py), started once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis
import redis.asyncio as aioredis

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import Metadata
from layotto.components.state.base import GetRequest, SetRequest, StateStore
from layotto.errors import BackendUnavailableError
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import CallbackApp
from tests.contract.state.backends import CLUSTER_ROW, Row, grpc_config, interface_storage
from tests.contract.state.conftest import StateEnv

# The state suites, on the cluster (see the module doc): collected here with this module's
# fixtures. Their two transactions over unrelated keys are replaced by the tests below.
from tests.contract.state.test_state_concurrency import test_concurrent_read_modify_write_loses_nothing  # noqa: F401
from tests.contract.state.test_state_conformance import (  # noqa: F401
    test_bulk_get_order_independent_with_missing_keys,
    test_bulk_save_and_bulk_delete,
    test_bulk_save_with_etags,
    test_empty_value_round_trips,
    test_etag_zero_or_empty_means_none,
    test_every_save_increments_the_etag,
    test_first_write,
    test_key_prefix_none_stores_the_key_as_is,
    test_key_prefix_strategies,
    test_large_value,
    test_last_write_ignores_the_etag,
    test_malformed_etag_is_invalid_argument,
    test_matching_etag_saves_and_deletes,
    test_missing_key_reads_empty,
    test_save_get_delete,
    test_separator_in_key_is_rejected,
    test_stale_etag_is_aborted_and_changes_nothing,
    test_ttl_expires_the_key,
    test_ttl_in_transaction_and_non_positive_ttl,
)
from tests.contract.state.test_state_contract import (  # noqa: F401
    test_bulk_operations,
    test_declares_exactly_the_rows_features,
    test_etag_feature,
    test_get_set_delete,
    test_query_feature,
    test_ttl_feature,
)
from tests.support.redis_cluster import RedisClusterServers, cluster_metadata, shared_cluster
from tests.support.rows import BackendRow
from tests.support.sidecar import SidecarProcess, running_sidecar

RUN = uuid.uuid4().hex[:8]
APP_ID = f"scale-cluster-{RUN}"
TOPIC = f"scale-events-{RUN}"
STATE, LOCK, SEQ, PUBSUB = "state", "lock", "seq", "ps"
#: Figures, printed with -s and quoted in docs/scaling.md.
FIGURES: dict[str, str] = {}


# ---- fixtures: the suites' (one in-process sidecar) and two sidecar processes ----


@pytest.fixture(scope="module")
def row() -> Row:
    return CLUSTER_ROW


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[StateEnv]:
    async with running_sidecar(grpc_config(CLUSTER_ROW)) as (sidecar, address):
        async with grpc.aio.insecure_channel(address) as channel:
            yield StateEnv(CLUSTER_ROW, sidecar, runtime_pb2_grpc.RuntimeStub(channel))


@pytest.fixture(scope="module")
async def store() -> AsyncIterator[StateStore]:
    component = await CLUSTER_ROW.create(**interface_storage(CLUSTER_ROW))
    assert isinstance(component, StateStore)
    try:
        yield component
    finally:
        await component.close()


@dataclass
class Deployment:
    app: CallbackApp
    procs: list[SidecarProcess]
    stubs: list[runtime_pb2_grpc.RuntimeStub]


@pytest.fixture(scope="module")
async def deployment() -> AsyncIterator[Deployment]:
    metadata = cluster_metadata()
    app = CallbackApp([(PUBSUB, TOPIC, {"maxConcurrency": "64"})])
    config = {
        "app": {"app_id": APP_ID, "grpc_callback_port": app.port},
        "state": {STATE: {"type": "redis", "metadata": metadata}},
        "lock": {LOCK: {"type": "redis", "metadata": metadata}},
        # A small segment: the sidecars take many interleaved ranges of the one counter.
        "sequencer": {SEQ: {"type": "redis", "metadata": {**metadata, "segmentStep": 50}}},
        "pub_subs": {PUBSUB: {"type": "redis", "metadata": metadata}},
    }
    procs = [SidecarProcess(config, actuator=False) for _ in range(2)]
    await app.start()
    channels: list[grpc.aio.Channel] = []
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        channels = [grpc.aio.insecure_channel(p.address) for p in procs]
        await app.wait_for(lambda: app.list_calls >= len(procs))
        yield Deployment(app, procs, [runtime_pb2_grpc.RuntimeStub(c) for c in channels])
    finally:
        for channel in channels:
            await channel.close()
        await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in procs if p.proc is not None))
        await app.stop()
        with contextlib.closing(shared_cluster().client()) as cluster:
            cluster.delete(TOPIC)


@pytest.fixture
def cluster() -> Iterator[redis.RedisCluster]:
    with contextlib.closing(shared_cluster().client()) as client:
        yield client


# ---- state ----


async def _increment(stub: runtime_pb2_grpc.RuntimeStub, key: str) -> int:
    """One read-modify-write of the counter at `key` with its etag; the conflicts it retried."""
    for conflicts in itertools.count():
        current = await stub.GetState(pb.GetStateRequest(store_name=STATE, key=key))
        item = pb.StateItem(key=key, value=str(int(current.data or b"0") + 1).encode())
        if current.etag:
            item.etag.value = current.etag
        else:
            item.options.concurrency = pb.StateOptions.CONCURRENCY_FIRST_WRITE
        try:
            await stub.SaveState(pb.SaveStateRequest(store_name=STATE, states=[item]))
            return conflicts
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.ABORTED, exc.details()
    raise AssertionError("unreachable")


async def test_etag_counter_over_two_sidecars_is_exact(deployment: Deployment) -> None:
    key, writers, increments = f"counter-{RUN}", 8, 25

    async def writer(stub: runtime_pb2_grpc.RuntimeStub) -> int:
        return sum([await _increment(stub, key) for _ in range(increments)])

    started = time.monotonic()
    stubs = [deployment.stubs[i % 2] for i in range(writers)]
    conflicts = sum(await asyncio.wait_for(asyncio.gather(*(writer(s) for s in stubs)), 120))
    elapsed = time.monotonic() - started
    final = await deployment.stubs[0].GetState(pb.GetStateRequest(store_name=STATE, key=key))
    assert (int(final.data), final.etag) == (writers * increments, str(writers * increments))
    FIGURES["state rmw"] = f"{writers * increments} etag increments in {elapsed:.1f}s, {conflicts} conflicts retried"
    print(f"\n[cluster state] {FIGURES['state rmw']}")


async def test_keys_land_on_every_master_and_bulk_get_spans_slots(
    deployment: Deployment, cluster: redis.RedisCluster
) -> None:
    keys = [f"spread-{RUN}-{i}" for i in range(48)]
    stub = deployment.stubs[1]
    await stub.SaveState(
        pb.SaveStateRequest(store_name=STATE, states=[pb.StateItem(key=k, value=k.encode()) for k in keys])
    )
    per_master = {}
    for node in cluster.get_primaries():
        per_master[node.port] = sum(1 for _ in cluster.scan_iter(match=f"*spread-{RUN}-*", target_nodes=node))
    assert len(per_master) == 3 and all(per_master.values()), f"keys per master: {per_master}"
    assert sum(per_master.values()) == len(keys)
    reply = await deployment.stubs[0].GetBulkState(
        pb.GetBulkStateRequest(store_name=STATE, keys=[*keys, f"missing-{RUN}"])
    )
    found = {item.key: item.data for item in reply.items}
    assert found == {**{k: k.encode() for k in keys}, f"missing-{RUN}": b""}
    assert len({cluster.keyslot(k) for k in keys}) > 1


def _op(kind: str, key: str, value: bytes = b"", etag: str | None = None) -> pb.TransactionalStateOperation:
    item = pb.StateItem(key=key, value=value)
    if etag:
        item.etag.value = etag
    return pb.TransactionalStateOperation(operationType=kind, request=item)


async def test_a_transaction_within_one_slot_is_atomic(deployment: Deployment) -> None:
    """Transfers between two accounts of one {hash tag}, by concurrent clients over both
    sidecars, each a transaction checking both etags: the total never changes."""
    a, b = f"{{acct-{RUN}}}:a", f"{{acct-{RUN}}}:b"
    stub = deployment.stubs[0]
    await stub.SaveState(
        pb.SaveStateRequest(store_name=STATE, states=[pb.StateItem(key=k, value=b"100") for k in (a, b)])
    )

    async def transfer(stub: runtime_pb2_grpc.RuntimeStub, amount: int) -> int:
        for attempt in itertools.count():
            reply = await stub.GetBulkState(pb.GetBulkStateRequest(store_name=STATE, keys=[a, b]))
            now = {item.key: item for item in reply.items}
            ops = [
                _op("upsert", a, str(int(now[a].data) - amount).encode(), now[a].etag),
                _op("upsert", b, str(int(now[b].data) + amount).encode(), now[b].etag),
            ]
            try:
                await stub.ExecuteStateTransaction(pb.ExecuteStateTransactionRequest(storeName=STATE, operations=ops))
                return attempt
            except grpc.aio.AioRpcError as exc:
                assert "etag mismatch" in exc.details(), exc.details()
        raise AssertionError("unreachable")

    clients = [transfer(deployment.stubs[i % 2], i % 3 + 1) for i in range(8) for _ in range(5)]
    retries = sum(await asyncio.wait_for(asyncio.gather(*clients), 120))
    reply = await stub.GetBulkState(pb.GetBulkStateRequest(store_name=STATE, keys=[a, b]))
    values = {item.key: int(item.data) for item in reply.items}
    moved = sum(i % 3 + 1 for i in range(8)) * 5
    assert values == {a: 100 - moved, b: 100 + moved}, f"{retries} retried; {values}"


async def test_a_transaction_across_slots_is_refused_and_writes_nothing(
    deployment: Deployment, cluster: redis.RedisCluster
) -> None:
    a, b = f"x-{RUN}", f"y-{RUN}"
    assert cluster.keyslot(a) != cluster.keyslot(b)
    stub = deployment.stubs[1]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ExecuteStateTransaction(
            pb.ExecuteStateTransactionRequest(
                storeName=STATE, operations=[_op("upsert", a, b"1"), _op("upsert", b, b"2")]
            )
        )
    details = refused.value.details()
    assert "one hash slot" in details and a in details and b in details, details
    reply = await stub.GetBulkState(pb.GetBulkStateRequest(store_name=STATE, keys=[a, b]))
    assert [item.data for item in reply.items] == [b"", b""]


# ---- lock ----


async def test_twenty_clients_per_sidecar_never_share_the_lock(deployment: Deployment) -> None:
    resource, holders, most, acquired = f"lock-{RUN}", 0, 0, 0
    deadline = time.monotonic() + 2.5

    async def client(stub: runtime_pb2_grpc.RuntimeStub) -> None:
        nonlocal holders, most, acquired
        owner = uuid.uuid4().hex
        while time.monotonic() < deadline:
            got = await stub.TryLock(
                pb.TryLockRequest(store_name=LOCK, resource_id=resource, lock_owner=owner, expire=10)
            )
            if not got.success:
                await asyncio.sleep(0.002)
                continue
            holders += 1
            most, acquired = max(most, holders), acquired + 1
            await asyncio.sleep(0.001)  # hold it across an event-loop turn
            holders -= 1
            released = await stub.Unlock(pb.UnlockRequest(store_name=LOCK, resource_id=resource, lock_owner=owner))
            assert released.status == pb.UnlockResponse.SUCCESS

    started = time.monotonic()
    await asyncio.gather(*(client(deployment.stubs[i % 2]) for i in range(40)))
    elapsed = time.monotonic() - started
    assert most == 1, f"{most} holders at once"
    assert acquired > 20, f"only {acquired} acquisitions"
    FIGURES["lock"] = f"{acquired} acquisitions in {elapsed:.1f}s ({acquired / elapsed:.0f}/s), never two holders"
    print(f"\n[cluster lock] {FIGURES['lock']}")


# ---- sequencer ----


async def _ids(stub: runtime_pb2_grpc.RuntimeStub, key: str, count: int, increment: Any) -> list[int]:
    request = pb.GetNextIdRequest(store_name=SEQ, key=key)
    request.options.increment = increment
    return [int((await stub.GetNextId(request)).next_id) for _ in range(count)]


@pytest.mark.parametrize("increment", [pb.SequencerOptions.WEAK, pb.SequencerOptions.STRONG], ids=["weak", "strong"])
async def test_two_thousand_ids_per_sidecar_without_a_duplicate(deployment: Deployment, increment: Any) -> None:
    key = f"ids-{RUN}-{increment}"
    started = time.monotonic()
    runs = await asyncio.gather(*(_ids(deployment.stubs[i % 2], key, 200, increment) for i in range(20)))
    elapsed = time.monotonic() - started
    for run in runs:
        assert all(b > a for a, b in itertools.pairwise(run)), "a client saw its ids go down"
    every = [i for run in runs for i in run]
    assert len(every) == 4000 and len(set(every)) == 4000, f"{len(every) - len(set(every))} duplicate ids"
    name = "weak" if increment == pb.SequencerOptions.WEAK else "strong"
    FIGURES[f"ids {name}"] = f"4,000 {name} ids in {elapsed:.2f}s ({4000 / elapsed:.0f}/s)"
    print(f"\n[cluster sequencer] {FIGURES[f'ids {name}']}")


# ---- pub/sub ----


async def test_five_hundred_events_through_streams(deployment: Deployment, cluster: redis.RedisCluster) -> None:
    app, count = deployment.app, 500
    started = time.monotonic()

    async def publish(stub: runtime_pb2_grpc.RuntimeStub, numbers: range) -> None:
        for n in numbers:
            await stub.PublishEvent(pb.PublishEventRequest(pubsub_name=PUBSUB, topic=TOPIC, data=f"e-{n}".encode()))

    await asyncio.gather(*(publish(deployment.stubs[i % 2], range(i, count, 10)) for i in range(10)))
    await app.wait_for(lambda: len(app.succeeded) >= count, within=60)
    elapsed = time.monotonic() - started
    assert set(app.succeeded) == {f"e-{n}".encode() for n in range(count)}
    # One stream key, its group on the master of its slot, read by a consumer per sidecar.
    groups = cluster.xinfo_groups(TOPIC)
    assert [g["name"] for g in groups] == [APP_ID.encode()]
    assert groups[0]["consumers"] == 2
    duplicates = sum(n - 1 for n in app.succeeded.values())
    FIGURES["pubsub"] = (
        f"{count} events end to end in {elapsed:.2f}s ({count / elapsed:.0f}/s), {duplicates} duplicates"
    )
    print(f"\n[cluster pubsub] {FIGURES['pubsub']}")


# ---- redirections ----


def _settings() -> redis_driver.RedisSettings:
    return redis_driver.RedisSettings.from_metadata(Metadata(cluster_metadata(), where="test"))


@pytest.mark.parametrize("autopipeline", [False, True], ids=["plain", "autopipelined"])
async def test_moved_is_followed_and_patches_the_slot_table(autopipeline: bool) -> None:
    client = redis_driver.connect(_settings(), autopipeline=autopipeline)
    assert isinstance(client, redis_driver.RoutedCluster)
    key = f"moved-{RUN}-{autopipeline}"
    try:
        await client.set(key, "v")
        slot, owner = client.keyslot(key), client.get_node_from_key(key)
        wrong = next(n for n in client.get_primaries() if n != owner)
        client.nodes_manager.slots_cache[slot] = [wrong]  # as if the slot had moved away
        assert await client.get(key) == b"v"
        assert client.get_node_from_key(key) == owner
        await client.delete(key)
    finally:
        await client.aclose()


async def _node_id(host: str, port: int) -> str:
    node = aioredis.Redis(host=host, port=port)
    try:
        return str((await node.execute_command("CLUSTER", "MYID")).decode())
    finally:
        await node.aclose()


async def test_ask_is_followed_while_a_slot_migrates() -> None:
    """A slot set MIGRATING from its owner to another master: commands on keys not yet moved
    answer ASK, and the client retries them on the target after ASKING. The migration is then
    completed, so the cluster is left consistent (and stale clients get MOVED)."""
    client = redis_driver.connect(_settings(), autopipeline=True)
    assert isinstance(client, redis_driver.RoutedCluster)
    key = f"ask-{RUN}"
    try:
        await client.initialize()
        slot, source = client.keyslot(key), client.get_node_from_key(key)
        assert source is not None
        target = next(n for n in client.get_primaries() if n != source)
        source_id, target_id = await _node_id(source.host, source.port), await _node_id(target.host, target.port)
        src = aioredis.Redis(host=source.host, port=source.port)
        dst = aioredis.Redis(host=target.host, port=target.port)
        try:
            assert await src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
            await dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            await src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            assert await client.set(key, "moved-by-ask")  # absent on the source: ASK, written on the target
            assert await client.get(key) == b"moved-by-ask"
            assert await dst.execute_command("ASKING") and await dst.get(key) == b"moved-by-ask"
        finally:
            for node in (dst, src):
                await node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            await src.aclose()
            await dst.aclose()
        # The slot is the target's now; this client's table still says the source: MOVED.
        assert await client.get(key) == b"moved-by-ask"
        assert client.get_node_from_key(key) == target
        await client.delete(key)
    finally:
        await client.aclose()


# ---- a master failing over to its replica ----


@pytest.mark.slow
async def test_a_master_failover_is_followed() -> None:
    """A cluster of its own with a replica per master: SIGKILL the master of a key while a
    state store and the autopipelined client use it; both work again once the replica has
    taken over (cluster-node-timeout 1 s), without being made anew."""
    servers = await asyncio.to_thread(RedisClusterServers(masters=3, replicas=1, node_timeout_ms=1000).start)
    metadata = {"redisHost": servers.seeds, "redisType": "cluster", "dialTimeout": "1s"}
    client = redis_driver.connect(redis_driver.RedisSettings.from_metadata(Metadata(metadata)), autopipeline=True)
    assert isinstance(client, redis_driver.RoutedCluster)
    store = await BackendRow(block="state", type="redis", metadata=metadata, traits=None).create()
    assert isinstance(store, StateStore)
    key = f"failover-{RUN}"
    try:
        await store.set(SetRequest(key, b"before"))
        counter = f"{{{key}}}-n"  # in the key's slot: on the master that dies
        await client.incr(counter)
        owner = client.get_node_from_key(key)
        assert owner is not None
        victim = next(s for s in servers.servers if s.port == owner.port)
        killed = time.monotonic()
        victim.kill()
        back: dict[str, float] = {}

        async def until_back(name: str, call: Callable[[], Awaitable[object]]) -> None:
            while time.monotonic() - killed < 30:
                try:
                    await call()
                    back[name] = time.monotonic() - killed
                    return
                except (BackendUnavailableError, redis.ConnectionError):
                    await asyncio.sleep(0.05)

        await asyncio.gather(
            until_back("state store", lambda: store.set(SetRequest(key, b"after"))),
            until_back("autopipelined client", lambda: client.incr(counter)),
        )
        assert set(back) == {"state store", "autopipelined client"}, f"not back within 30 s: {back}"
        found = await store.get(GetRequest(key))
        assert found is not None and found.data == b"after"
        FIGURES["cluster failover"] = ", ".join(f"{name} back {t:.2f}s after SIGKILL" for name, t in back.items())
        print(f"\n[cluster failover] {FIGURES['cluster failover']}")
    finally:
        await store.close()
        await client.aclose()
        await asyncio.to_thread(servers.stop)
