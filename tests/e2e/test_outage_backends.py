"""Every networked component survives its backend going away and coming back.

One row per (block, component type). For each row, through a real sidecar (gRPC + actuator):

1. backend away -> the block's RPC answers UNAVAILABLE within UNAVAILABLE_WITHIN seconds, naming
   the backend; another block of the same sidecar keeps answering; readiness turns 503 with the
   component DOWN;
2. backend back -> the same RPC succeeds again, without restarting the sidecar, within
   RECOVERY_WITHIN seconds; readiness is 200 again.

A second test drops the component's connections while the backend stays (a server restart
between two calls): calls succeed again within RECOVERY_WITHIN, every failure meanwhile being
UNAVAILABLE.

Backends are throwaway servers or cuttable proxies (tests/support/backends.py): no shared
service is ever stopped. Adding a backend = one row in ROWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support import backends
from tests.support.backends import Backend
from tests.support.services import MYSQL, POSTGRES_DSN
from tests.support.sidecar import free_port, running_sidecar

#: The promise: an unreachable backend is reported at once, not after some library's 60 s default.
UNAVAILABLE_WITHIN = 5.0
#: Readiness probes ping with a 2 s limit; a DOWN backend must show on the next probe or so.
READINESS_WITHIN = 5.0
#: The component reconnects by itself this soon after the backend is back.
RECOVERY_WITHIN = 10.0
#: A HUNG backend (accepts, never answers) is given up on when the call's own timeout ends (a
#: row's `timeout`: the component's read/response timeout), give or take this much.
HUNG_SLACK = 1.5
#: An RPC deadline above every bound, so that a hang shows as a failed bound, not a timeout here.
RPC_DEADLINE = 15.0

RUN = uuid.uuid4().hex[:8]
OUT = "outage"
BYSTANDER = "bystander"
APP_ID = f"outage-app-{RUN}"
TOPIC = f"outage-{RUN}"

Stub = runtime_pb2_grpc.RuntimeStub
Probe = Callable[[Stub], Awaitable[None]]


def _table(block: str) -> str:
    return f"layotto_outage_{block}_{RUN}"


def _pg_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/test"


def _mysql_dsn(port: int) -> str:
    return f"{MYSQL['user']}:{MYSQL['password']}@tcp(127.0.0.1:{port})/{MYSQL['database']}"


# ---- the block calls (one backend round trip each) ----


def _key() -> str:
    return f"outage-{RUN}-{uuid.uuid4().hex[:12]}"


async def _save_state(stub: Stub) -> None:
    item = pb.StateItem(key=_key(), value=b"v")
    await stub.SaveState(pb.SaveStateRequest(store_name=OUT, states=[item]), timeout=RPC_DEADLINE)


async def _try_lock(stub: Stub) -> None:
    request = pb.TryLockRequest(store_name=OUT, resource_id=_key(), lock_owner="owner", expire=5)
    reply = await stub.TryLock(request, timeout=RPC_DEADLINE)
    assert reply.success


async def _next_id(stub: Stub) -> None:
    # STRONG: straight to the backend, never from a cached segment.
    options = pb.SequencerOptions(increment=pb.SequencerOptions.STRONG)
    reply = await stub.GetNextId(
        pb.GetNextIdRequest(store_name=OUT, key=f"outage-{RUN}", options=options), timeout=RPC_DEADLINE
    )
    assert reply.next_id > 0


async def _publish(stub: Stub) -> None:
    request = pb.PublishEventRequest(pubsub_name=OUT, topic=TOPIC, data=b"{}", data_content_type="application/json")
    await stub.PublishEvent(request, timeout=RPC_DEADLINE)


async def _get_configuration(stub: Stub) -> None:
    request = pb.GetConfigurationRequest(store_name=OUT, app_id=APP_ID, keys=["k"])
    await stub.GetConfiguration(request, timeout=RPC_DEADLINE)


def _invoke_binding(operation: str, **metadata: str) -> Probe:
    async def call(stub: Stub) -> None:
        request = pb.InvokeBindingRequest(name=OUT, operation=operation, metadata=metadata)
        await stub.InvokeBinding(request, timeout=RPC_DEADLINE)

    return call


async def _resolve_peer(stub: Stub) -> None:
    """Invoking another app needs name resolution. Once resolution works, the answer for an app
    nobody serves is "no sidecar ... was found", which counts as success here. A new app id
    each time: the resolver may answer a known one from its cache while the registry is away."""
    message = pb.CommonInvokeRequest(method="ping", data=None)
    request = pb.InvokeServiceRequest(id=f"nobody-{uuid.uuid4().hex[:12]}", message=message)
    try:
        await stub.InvokeService(request, timeout=RPC_DEADLINE)
    except grpc.aio.AioRpcError as exc:
        if "no sidecar serving app id" not in (exc.details() or ""):
            raise


# ---- the table ----


@dataclass(frozen=True)
class Row:
    block: str  # the grpc_config key
    type: str
    kind: str  # tests/support/backends.KINDS
    component: Callable[[int], dict[str, Any]]
    probe: Probe
    #: Words of which the UNAVAILABLE message must contain one (case-insensitive).
    names: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    #: The call's timeout against a hung backend: the component's default read/response timeout.
    timeout: float = 5.0
    #: Why a hung backend still blocks this row's calls beyond `timeout` (a known gap), or "".
    hung_gap: str = ""

    @property
    def id(self) -> str:
        return f"{self.block}-{self.type}"


def _redis(port: int) -> dict[str, Any]:
    return {"redisHost": f"127.0.0.1:{port}"}


def _md(**metadata: Any) -> Callable[[Any], dict[str, Any]]:
    return lambda _: metadata


ROWS: list[Row] = [
    # state
    Row("state", "redis", "redis", _redis, _save_state, ("redis",)),
    Row(
        "state",
        "postgresql",
        "postgresql",
        lambda p: {
            "connectionString": f"host=127.0.0.1 port={p} user=postgres dbname=test",
            "tableName": _table("state"),
        },
        _save_state,
        ("postgres",),
    ),
    Row(
        "state",
        "mysql",
        "mysql",
        lambda p: {
            "connectionString": f"root:@tcp(127.0.0.1:{p})/",
            "schemaName": "test",
            "tableName": _table("state"),
        },
        _save_state,
        ("mysql",),
    ),
    # lock
    Row("lock", "redis", "redis", _redis, _try_lock, ("redis",)),
    Row("lock", "redis_cluster", "redis", lambda p: {"redisHosts": f"127.0.0.1:{p}"}, _try_lock, ("redis",)),
    Row(
        "lock",
        "etcd",
        "etcd",
        lambda p: {"endpoints": f"127.0.0.1:{p}", "keyPrefixPath": f"/outage-{RUN}/"},
        _try_lock,
        ("etcd",),
    ),
    # aiozk gives a session up as suspended ~6 s into a silence at SessionTimeout 5 s.
    Row(
        "lock",
        "zookeeper",
        "zookeeper",
        lambda p: {"zookeeperHosts": f"127.0.0.1:{p}"},
        _try_lock,
        ("zookeeper",),
        timeout=6.5,
    ),
    Row(
        "lock",
        "postgresql",
        "postgresql",
        lambda p: {"connectionString": _pg_url(p), "tableName": _table("lock")},
        _try_lock,
        ("postgres",),
    ),
    Row(
        "lock",
        "mysql",
        "mysql",
        lambda p: {"connectionString": _mysql_dsn(p), "tableName": _table("lock")},
        _try_lock,
        ("mysql",),
    ),
    # sequencer
    Row("sequencer", "redis", "redis", _redis, _next_id, ("redis",)),
    Row(
        "sequencer",
        "etcd",
        "etcd",
        lambda p: {"endpoints": f"127.0.0.1:{p}", "keyPrefixPath": f"/outage-{RUN}/"},
        _next_id,
        ("etcd",),
    ),
    Row(
        "sequencer",
        "zookeeper",
        "zookeeper",
        lambda p: {"zookeeperHosts": f"127.0.0.1:{p}", "keyPrefixPath": f"/outage-{RUN}"},
        _next_id,
        ("zookeeper",),
        timeout=6.5,
    ),
    Row(
        "sequencer",
        "postgresql",
        "postgresql",
        lambda p: {"connectionString": _pg_url(p), "tableName": _table("seq")},
        _next_id,
        ("postgres",),
    ),
    Row(
        "sequencer",
        "mysql",
        "mysql",
        lambda p: {"connectionString": _mysql_dsn(p), "tableName": _table("seq")},
        _next_id,
        ("mysql",),
    ),
    # pubsub
    Row("pub_subs", "redis", "redis", _redis, _publish, ("redis",)),
    Row("pub_subs", "nats", "nats", lambda p: {"natsURL": f"nats://127.0.0.1:{p}"}, _publish, ("nats",)),
    Row(
        "pub_subs",
        "rabbitmq",
        "rabbitmq",
        lambda p: {"host": f"amqp://guest:guest@127.0.0.1:{p}/"},
        _publish,
        ("rabbitmq", "amqp"),
        timeout=10.0,  # the publish confirm's timeout
    ),
    Row(
        "pub_subs",
        "mqtt",
        "mqtt",
        lambda p: {"url": f"tcp://127.0.0.1:{p}", "qos": "1"},
        _publish,
        ("mqtt",),
    ),
    # configuration (upstream's config_store takes the etcd address outside metadata)
    Row(
        "config_store",
        "etcd",
        "etcd",
        _md(),
        _get_configuration,
        ("etcd",),
        extra={"address": "127.0.0.1:{port}"},
        timeout=10.0,  # upstream's `timeout` default
    ),
    Row("config_store", "redis", "redis", _redis, _get_configuration, ("redis",)),
    # bindings
    Row(
        "bindings",
        "redis",
        "redis",
        _redis,
        _invoke_binding("get", key="k"),
        ("redis",),
    ),
    Row(
        "bindings",
        "postgresql",
        "postgresql",
        lambda p: {"url": _pg_url(p)},
        _invoke_binding("query", sql="SELECT 1"),
        ("postgres",),
    ),
    Row(
        "bindings",
        "http",
        "http",
        lambda p: {"url": f"http://127.0.0.1:{p}/"},
        _invoke_binding("get"),
        ("127.0.0.1",),
        timeout=10.0,  # responseTimeout's default
    ),
    # name resolution (reached through InvokeService to another app)
    Row(
        "name_resolution",
        "redis",
        "redis",
        lambda p: {"redisHost": f"127.0.0.1:{p}", "keyPrefix": f"layotto-outage-{RUN}:", "ttl": "2s"},
        _resolve_peer,
        ("redis",),
    ),
]


def _entry(row: Row, port: int) -> dict[str, Any]:
    # Critical, so that readiness fails with it whatever its block (by default only state
    # stores and the pub/subs the app subscribes to are: tests/e2e/test_readiness.py).
    entry: dict[str, Any] = {"type": row.type, "metadata": {**row.component(port), "critical": "true"}}
    for key, value in row.extra.items():
        entry[key] = [value.format(port=port)] if key == "address" else value
    return entry


def _grpc_config(row: Row, port: int) -> dict[str, Any]:
    config: dict[str, Any] = {"app": {"app_id": APP_ID}, "state": {BYSTANDER: {"type": "in-memory"}}}
    config.setdefault(row.block, {})[OUT] = _entry(row, port)
    return config


# ---- the sidecar and its actuator ----


@dataclass
class Rig:
    row: Row
    backend: Backend
    stub: Stub
    actuator_port: int

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.actuator_port)
        try:
            writer.write(b"GET /actuator/health/readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    async def wait_readiness(self, code: int, status: str, within: float) -> float:
        started = time.monotonic()
        while True:
            got, body = await self.readiness()
            component = body.get("components", {}).get(OUT, {}).get("status")
            if got == code and component == status:
                assert body["components"][BYSTANDER]["status"] == "UP", body
                return time.monotonic() - started
            assert time.monotonic() - started < within, f"readiness not {code}/{status} within {within}s: {got} {body}"
            await asyncio.sleep(0.05)

    async def bystander_answers(self) -> None:
        started = time.monotonic()
        request = pb.SaveStateRequest(store_name=BYSTANDER, states=[pb.StateItem(key="k", value=b"v")])
        await self.stub.SaveState(request, timeout=5)
        assert time.monotonic() - started < 1.0, "another block was slowed down by the outage"

    async def recover(self, within: float) -> tuple[float, int]:
        """Call until the block answers; returns (seconds, failed calls). Failures must be UNAVAILABLE."""
        started, failures = time.monotonic(), 0
        while True:
            try:
                await self.row.probe(self.stub)
                return time.monotonic() - started, failures
            except grpc.aio.AioRpcError as exc:
                failures += 1
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, f"{exc.code()}: {exc.details()}"
                elapsed = time.monotonic() - started
                assert elapsed < within, f"{self.row.id} did not recover within {within}s: {exc.details()}"
                await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def shared_backends() -> AsyncIterator[dict[str, Backend]]:
    """One backend per kind for the whole module: every test takes it down and brings it back,
    so the next row starts from a running server without paying for a fresh start."""
    started: dict[str, Backend] = {}
    yield started
    for backend in started.values():
        await backend.close()


async def _backend(shared: dict[str, Backend], kind: str) -> Backend:
    backend = shared.get(kind)
    if backend is None:
        backend = shared[kind] = backends.KINDS[kind]()
    await backend.up()
    return backend


@contextlib.asynccontextmanager
async def _rig(row: Row, backend: Backend) -> AsyncIterator[Rig]:
    actuator_port = free_port()
    async with running_sidecar(_grpc_config(row, backend.port), actuator_port=actuator_port) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            rig = Rig(row, backend, runtime_pb2_grpc.RuntimeStub(channel), actuator_port)
            await rig.recover(RECOVERY_WITHIN)  # a fresh server may need a moment before serving
            yield rig


@pytest.fixture(params=[pytest.param(r, id=r.id) for r in ROWS])
async def rig(
    request: pytest.FixtureRequest, shared_backends: dict[str, Backend], sql_cleanup: None
) -> AsyncIterator[Rig]:
    row: Row = request.param
    async with _rig(row, await _backend(shared_backends, row.kind)) as rig:
        yield rig


async def test_backend_away_is_unavailable_then_recovers(rig: Rig) -> None:
    row = rig.row
    await rig.wait_readiness(200, "UP", READINESS_WITHIN)

    await rig.backend.down()
    for attempt in ("first", "second"):
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await row.probe(rig.stub)
        took = time.monotonic() - started
        details = caught.value.details() or ""
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, f"{caught.value.code()}: {details}"
        assert took < UNAVAILABLE_WITHIN, f"{attempt} call after the outage took {took:.1f}s: {details}"
        assert any(name in details.lower() for name in row.names), f"message names no backend: {details}"
        if attempt == "first":
            unavailable_after = took
    await rig.bystander_answers()
    down_after = await rig.wait_readiness(503, "DOWN", READINESS_WITHIN)

    await rig.backend.up()
    recovered_after, failures = await rig.recover(RECOVERY_WITHIN)
    ready_after = await rig.wait_readiness(200, "UP", READINESS_WITHIN)
    print(
        f"\nOUTAGE {row.id}: UNAVAILABLE in {unavailable_after:.2f}s, readiness DOWN in {down_after:.2f}s,"
        f" recovered in {recovered_after:.2f}s ({failures} failed calls), ready in {ready_after:.2f}s"
        f" | {details[:160]}"
    )


async def test_dropped_connections_are_replaced(rig: Rig) -> None:
    await rig.backend.drop_connections()
    recovered_after, failures = await rig.recover(RECOVERY_WITHIN)
    await rig.wait_readiness(200, "UP", READINESS_WITHIN)
    print(f"\nDROP {rig.row.id}: answering again in {recovered_after:.2f}s ({failures} failed calls)")


async def _hung_call(rig: Rig) -> tuple[Row, float, grpc.aio.AioRpcError | None]:
    started = time.monotonic()
    try:
        await rig.row.probe(rig.stub)
    except grpc.aio.AioRpcError as exc:
        return rig.row, time.monotonic() - started, exc
    return rig.row, time.monotonic() - started, None


async def test_hung_backends_fail_in_bounded_time(shared_backends: dict[str, Backend], sql_cleanup: None) -> None:
    """Every backend frozen at once (SIGSTOP / a proxy that stops forwarding): connections stay
    open and nothing answers. Each block must give up in bounded time, then recover."""
    async with contextlib.AsyncExitStack() as stack:
        rigs: list[Rig] = []
        for row in ROWS:
            try:
                backend = await _backend(shared_backends, row.kind)
            except pytest.skip.Exception:
                continue
            rigs.append(await stack.enter_async_context(_rig(row, backend)))
        frozen = {id(r.backend): r.backend for r in rigs}.values()
        for backend in frozen:
            await backend.freeze()
        try:
            results = await asyncio.gather(*(_hung_call(r) for r in rigs))
        finally:
            for backend in frozen:
                await backend.thaw()
        problems: list[str] = []
        for row, took, exc in results:
            code = exc.code() if exc else grpc.StatusCode.OK
            details = (exc.details() or "") if exc else ""
            print(f"HUNG {row.id}: {took:.2f}s {code.name} {details[:150]}")
            # The sidecar's own answer: UNAVAILABLE, or DEADLINE_EXCEEDED for a backend timeout;
            # a bare "Deadline Exceeded" is this test's RPC deadline, i.e. the sidecar never answered.
            answered = exc is not None and details != "Deadline Exceeded"
            bounded = answered and took < row.timeout + HUNG_SLACK
            if row.hung_gap:
                if bounded:
                    problems.append(f"{row.id} no longer hangs: drop its hung_gap ({row.hung_gap})")
                continue
            if not bounded or code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                problems.append(f"{row.id}: {code.name} after {took:.1f}s: {details[:200]}")
        recovered = await asyncio.gather(*(r.recover(RECOVERY_WITHIN) for r in rigs))
        for rig, (after, _) in zip(rigs, recovered, strict=True):
            print(f"HUNG {rig.row.id}: answering {after:.2f}s after the thaw")
        assert not problems, "\n".join(problems)


# ---- cleanup of what the rows created on shared servers ----


@pytest.fixture(scope="module")
async def sql_cleanup() -> AsyncIterator[None]:
    yield
    tables = [_table(block) for block in ("state", "lock", "seq")]
    try:
        import asyncpg

        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        try:
            for table in tables:
                await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        finally:
            await conn.close()
    except OSError:
        pass
    try:
        import aiomysql

        mysql = await aiomysql.connect(
            host=MYSQL["host"], port=MYSQL["port"], user=MYSQL["user"], db=MYSQL["database"], autocommit=True
        )
        try:
            async with mysql.cursor() as cur:
                for table in tables:
                    with warnings.catch_warnings():  # "unknown table" for a row that never ran
                        warnings.simplefilter("ignore", aiomysql.Warning)
                        await cur.execute(f"DROP TABLE IF EXISTS `{table}`")
        finally:
            mysql.close()
    except OSError:
        pass
    try:
        import aio_pika

        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/", timeout=5)
        try:
            channel = await connection.channel()
            await channel.exchange_delete(TOPIC)
        finally:
            await connection.close()
    except (OSError, aio_pika.exceptions.AMQPError):
        pass
