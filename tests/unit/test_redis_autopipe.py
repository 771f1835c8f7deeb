"""redis_autopipe: same results as redis-py, batched writes, and the failure paths
(dropped connection, unreachable server, stalled server, cancelled caller)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.components.base import Metadata
from layotto.components.redis_autopipe import _INCOMPLETE, AutoPipelineRedis, SharedConnection, pack, parse
from layotto.components.redisclient import connect
from tests.support.services import require
from tests.support.sidecar import free_port


@pytest.fixture
async def client() -> AsyncIterator[AutoPipelineRedis]:
    require("redis")
    c = AutoPipelineRedis(host="127.0.0.1", port=6379, socket_timeout=5)
    yield c
    await c.aclose()


@pytest.fixture
async def plain() -> AsyncIterator[aioredis.Redis]:
    require("redis")
    c = aioredis.Redis(host="127.0.0.1", port=6379)
    yield c
    await c.aclose()


def key() -> str:
    return f"autopipe-test-{uuid.uuid4().hex}"


# ---- the RESP parser on its own ----


def test_parse_replies_and_fragments() -> None:
    nested = b"*3\r\n$1\r\na\r\n*2\r\n:7\r\n$-1\r\n+OK\r\n"
    assert parse(nested, 0) == ([b"a", [7, None], b"OK"], len(nested))
    for cut in range(1, len(nested)):
        value, _ = parse(nested[:cut], 0)
        assert value is _INCOMPLETE, cut
    value, need = parse(b"$10\r\nabc", 0)
    assert value is _INCOMPLETE and need == 17  # a large value is not re-parsed per chunk
    err, _ = parse(b"-NOSCRIPT No matching script.\r\n", 0)
    assert isinstance(err, NoScriptError)
    err, _ = parse(b"-WRONGTYPE Operation\r\n", 0)
    assert type(err) is ResponseError and str(err) == "WRONGTYPE Operation"
    with pytest.raises(RedisConnectionError):
        parse(b"?what\r\n", 0)


def test_pack_encodes_like_redis_py() -> None:
    assert pack(("SET", b"k", 1, 1.5), SharedConnection.encode_other) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(DataError):
        pack(("SET", "k", True), SharedConnection.encode_other)


# ---- against the real server ----


async def test_same_results_as_redis_py(client: AutoPipelineRedis, plain: aioredis.Redis) -> None:
    k = key()
    try:
        assert await client.hset(k, mapping={"data": b"x", "version": 1}) == 2
        assert await client.hgetall(k) == await plain.hgetall(k) == {b"data": b"x", b"version": b"1"}
        assert await client.hgetall(k + "-none") == {}
        assert await client.get(k + "-none") is None
        assert await client.set(k + "-s", "v", nx=True, ex=30) is True
        assert await client.set(k + "-s", "w", nx=True, ex=30) is None
        with pytest.raises(ResponseError, match=r"^WRONGTYPE"):
            await client.get(k)
        script = client.register_script("return {KEYS[1], ARGV[1], 3}")
        await client.script_flush()  # then the script object loads it again through NOSCRIPT
        assert await script(keys=[k], args=["a"]) == [k.encode(), b"a", 3]
        assert await client.delete(k, k + "-s") == 2
    finally:
        await plain.delete(k, k + "-s")


async def test_concurrent_commands_share_one_write(client: AutoPipelineRedis, plain: aioredis.Redis) -> None:
    k = key()
    try:
        await client.ping()
        pipe = client.shared._pipe
        assert pipe is not None and pipe.transport is not None
        writes: list[bytes] = []
        original = pipe.transport.write
        pipe.transport.write = lambda data: (writes.append(data), original(data))[1]  # type: ignore[method-assign]
        results = await asyncio.gather(*(client.incr(k) for _ in range(50)))
        assert results == list(range(1, 51))  # replies resolved in the order sent
        assert len(writes) <= 2  # the first goes straight out on an idle connection
    finally:
        await plain.delete(k)


async def test_large_value_in_many_chunks(client: AutoPipelineRedis, plain: aioredis.Redis) -> None:
    k = key()
    big = bytes(range(256)) * 20_000
    try:
        await plain.set(k, big)
        got, small = await asyncio.gather(client.get(k), client.strlen(k))
        assert got == big and small == len(big)
    finally:
        await plain.delete(k)


async def test_blocking_commands_do_not_hold_the_shared_connection(client: AutoPipelineRedis) -> None:
    k = key()
    blocked = asyncio.ensure_future(client.blpop([k], timeout=1))
    await asyncio.sleep(0)  # let it take its own connection
    start = time.monotonic()
    assert await client.get(k) is None
    assert time.monotonic() - start < 0.5
    assert await blocked is None


async def test_cancelled_caller_does_not_shift_replies(client: AutoPipelineRedis, plain: aioredis.Redis) -> None:
    k = key()
    try:
        await plain.set(k, "v")
        first = asyncio.ensure_future(client.get(k + "-none"))
        await asyncio.sleep(0)
        first.cancel()
        assert await client.get(k) == b"v"
    finally:
        await plain.delete(k)


async def test_reconnects_after_the_server_drops_it(client: AutoPipelineRedis, plain: aioredis.Redis) -> None:
    k = key()
    try:
        await plain.set(k, "v")
        conn_id = await client.shared.execute("CLIENT", "ID")
        await plain.client_kill_filter(_id=conn_id)
        assert await client.get(k) == b"v"  # idempotent: retried on a new connection
        assert await client.shared.execute("CLIENT", "ID") != conn_id
        # A write is not retried: its caller sees the drop, the next call reconnects.
        conn_id = await client.shared.execute("CLIENT", "ID")
        results = await asyncio.gather(
            plain.client_kill_filter(_id=conn_id), client.shared.execute("BLPOP", k + "-l", 1), return_exceptions=True
        )
        assert isinstance(results[1], RedisConnectionError)
        assert await client.incr(k + "-n") == 1
    finally:
        await plain.delete(k, k + "-n")


async def test_unreachable_server_fails_fast() -> None:
    c = AutoPipelineRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(RedisConnectionError, match="connecting to"):
        await c.get("k")
    assert time.monotonic() - start < 1
    await c.aclose()


async def test_stalled_server_times_out_and_reconnects() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = AutoPipelineRedis(host="127.0.0.1", port=port, socket_timeout=0.2)
    try:
        start = time.monotonic()
        results = await asyncio.gather(c.get("a"), c.get("b"), return_exceptions=True)
        assert all(isinstance(r, RedisTimeoutError) for r in results)
        assert time.monotonic() - start < 1.5
        with pytest.raises(RedisTimeoutError):
            await c.get("c")
        assert len(accepted) == 2  # a new connection after the timeout
    finally:
        await c.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_redisclient_connect_opts_in() -> None:
    require("redis")
    md = Metadata({"redisHost": "127.0.0.1:6379", "redisDB": "1"}, where="test")
    c = connect(md, autopipeline=True)
    plain = aioredis.Redis(host="127.0.0.1", port=6379, db=1)
    k = key()
    try:
        assert isinstance(c, AutoPipelineRedis)
        await c.set(k, "in-db-1")
        assert await plain.get(k) == b"in-db-1"  # SELECT was sent on the shared connection
        assert not isinstance(connect(md), AutoPipelineRedis)
    finally:
        await plain.delete(k)
        await plain.aclose()
        await c.aclose()
