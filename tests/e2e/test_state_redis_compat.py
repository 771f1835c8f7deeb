"""The redis store keeps Dapr components-contrib v1.5.2's layout: a hash per key with `data`,
`version` (the etag) and `first-write`; data written that way by upstream reads back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as aioredis

from layotto.components.base import ComponentContext, Metadata
from layotto.components.state.base import DeleteRequest, GetRequest, SetRequest
from layotto.components.state.redis import RedisStateStore
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.services import require
from tests.support.sidecar import running_sidecar

STORE = "redis_compat"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[tuple[runtime_pb2_grpc.RuntimeStub, aioredis.Redis]]:
    require("redis")
    config = {"state": {STORE: {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}}}}
    raw = aioredis.Redis(host="127.0.0.1", port=6379)
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel), raw
    await raw.aclose()


def key() -> str:
    return f"redis-compat-{uuid.uuid4().hex}"


async def save(stub: runtime_pb2_grpc.RuntimeStub, item: pb.StateItem) -> None:
    await stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[item]))


async def test_layout_written(env: tuple[runtime_pb2_grpc.RuntimeStub, aioredis.Redis]) -> None:
    stub, raw = env
    k, fw = key(), key()
    await save(stub, pb.StateItem(key=k, value=b"\x00bin"))
    await save(stub, pb.StateItem(key=fw, value=b"v", options=pb.StateOptions(concurrency=1)))
    try:
        assert await raw.hgetall(k) == {b"data": b"\x00bin", b"version": b"1"}
        assert await raw.hgetall(fw) == {b"data": b"v", b"version": b"1", b"first-write": b"0"}
        assert await raw.ttl(k) == -1
    finally:
        await raw.delete(k, fw)


async def test_upstream_data_reads_back_and_keeps_counting(
    env: tuple[runtime_pb2_grpc.RuntimeStub, aioredis.Redis],
) -> None:
    stub, raw = env
    k, plain = key(), key()
    await raw.hset(k, mapping={"data": b"from upstream", "version": "41"})
    await raw.set(plain, b"plain value")  # pre-hash layout: read without an etag
    try:
        reply = await stub.GetState(pb.GetStateRequest(store_name=STORE, key=k))
        assert (reply.data, reply.etag) == (b"from upstream", "41")
        await save(stub, pb.StateItem(key=k, value=b"ours", etag=pb.Etag(value="41")))
        assert await raw.hgetall(k) == {b"data": b"ours", b"version": b"42"}
        reply = await stub.GetState(pb.GetStateRequest(store_name=STORE, key=plain))
        assert (reply.data, reply.etag) == (b"plain value", "")
        await save(stub, pb.StateItem(key=plain, value=b"now a hash"))
        assert await raw.hgetall(plain) == {b"data": b"now a hash", b"version": b"1"}
    finally:
        await raw.delete(k, plain)


async def test_ttl_maps_to_expire_and_persist(env: tuple[runtime_pb2_grpc.RuntimeStub, aioredis.Redis]) -> None:
    stub, raw = env
    k = key()
    try:
        await save(stub, pb.StateItem(key=k, value=b"v", metadata={"ttlInSeconds": "100"}))
        assert 0 < await raw.ttl(k) <= 100
        await save(stub, pb.StateItem(key=k, value=b"v"))  # no ttl: the expiry stays, as upstream
        assert 0 < await raw.ttl(k) <= 100
        await save(stub, pb.StateItem(key=k, value=b"v", metadata={"ttlInSeconds": "0"}))
        assert await raw.ttl(k) == -1
    finally:
        await raw.delete(k)


async def test_unknown_script_falls_back_to_eval() -> None:
    """EVALSHA falls back to EVAL when the server lacks the script (restart, failover, flush)."""
    require("redis")
    store = RedisStateStore()
    await store.init(Metadata({"redisHost": "127.0.0.1:6379"}), ComponentContext("compat", "state"))
    store._set.sha = "0" * 40  # a script the server has never seen
    k = key()
    try:
        await store.set(SetRequest(k, b"v"))
        await store.set(SetRequest(k, b"w", etag="1"))
        found = await store.get(GetRequest(k))
        assert found is not None and (found.data, found.etag) == (b"w", "2")
    finally:
        await store.delete(DeleteRequest(k))
        await store.close()
