"""_drivers/redis_autopipe: same results and errors as redis-py, batched writes, and the failure
paths (dropped connection, unreachable server, stalled server, cancelled caller)."""

from __future__ import annotations

import ast
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ExecAbortError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.components import _drivers
from layotto.components._drivers.redis import RedisSettings, connect, shared_connection
from layotto.components._drivers.redis_autopipe import INCOMPLETE, AutoPipelineRedis, pack, reply_reader
from layotto.components.base import Metadata
from tests.support.services import require
from tests.support.sidecar import free_port


def autopipelined(address: str, **metadata: str) -> AutoPipelineRedis:
    settings = RedisSettings.from_metadata(Metadata({"redisHost": address, **metadata}, where="test"))
    client = connect(settings, autopipeline=True)
    assert isinstance(client, AutoPipelineRedis)
    return client


@pytest.fixture
async def client() -> AsyncIterator[AutoPipelineRedis]:
    require("redis")
    c = autopipelined("127.0.0.1:6379")
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


# ---- the reply reader and the encoder on their own ----


def test_reader_returns_whole_replies_from_fragments() -> None:
    nested = b"*3\r\n$1\r\na\r\n*2\r\n:7\r\n$-1\r\n+OK\r\n"
    reader = reply_reader()
    for byte in nested[:-1]:
        reader.feed(bytes([byte]))
        assert reader.gets() is INCOMPLETE
    reader.feed(nested[-1:])
    assert reader.gets() == [b"a", [7, None], b"OK"]
    assert reader.gets() is INCOMPLETE


def test_reader_maps_error_replies_as_redis_py_does() -> None:
    reader = reply_reader()
    reader.feed(b"-NOSCRIPT No matching script.\r\n-WRONGTYPE Operation\r\n-ERR unknown command\r\n")
    reader.feed(b"*2\r\n-EXECABORT Transaction discarded.\r\n:1\r\n")
    noscript, wrongtype, err, (aborted, one) = reader.gets(), reader.gets(), reader.gets(), reader.gets()
    assert type(noscript) is NoScriptError and str(noscript) == "No matching script."
    assert type(wrongtype) is ResponseError and str(wrongtype) == "WRONGTYPE Operation"
    assert type(err) is ResponseError and str(err) == "unknown command"
    assert type(aborted) is ExecAbortError and one == 1  # inside an array: left in place
    reader = reply_reader()
    reader.feed(b"?what\r\n")
    with pytest.raises(RedisConnectionError):
        reader.gets()


def test_pack_encodes_like_redis_py() -> None:
    assert pack(("SET", b"k", 1, 1.5, memoryview(b"m"))) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n1.5\r\n$1\r\nm\r\n"
    )
    with pytest.raises(DataError):
        pack(("SET", "k", True))
    with pytest.raises(DataError):
        pack(("SET", "k", None))


def test_drivers_use_no_private_redis_py_module() -> None:
    """redis-py's underscore modules and names change in minor releases; the drivers must not
    need them (hiredis parses the replies, the error classes are redis.exceptions')."""
    private = []
    for path in Path(_drivers.__file__).parent.glob("redis*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "redis":
                names = [node.module or "", *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.split(".")[0] == "redis"]
            else:
                continue
            private += [f"{path.name}: {n}" for n in names for part in n.split(".") if part.startswith("_")]
    assert private == []


def test_a_pool_speaking_resp3_is_refused() -> None:
    """The response callbacks are chosen for the pool's protocol and applied to the shared
    connection's RESP2 replies too: they must be the same protocol."""
    settings = RedisSettings.from_metadata(Metadata({"redisHost": "127.0.0.1:6379"}))
    with pytest.raises(ValueError, match="protocol=2"):
        AutoPipelineRedis(aioredis.ConnectionPool(protocol=3), shared_connection(settings))


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


async def test_same_errors_as_redis_py(client: AutoPipelineRedis, plain: aioredis.Redis) -> None:
    k = key()
    try:
        await plain.hset(k, "f", "v")
        calls = [
            lambda c: c.get(k),  # WRONGTYPE
            lambda c: c.evalsha("0" * 40, 0),  # NOSCRIPT
            lambda c: c.incr(k),  # WRONGTYPE on a hash
            lambda c: c.execute_command("NOSUCHCOMMAND"),  # ERR unknown command
            lambda c: c.execute_command("GET"),  # ERR wrong number of arguments
            lambda c: c.eval("return redis.error_reply('etag mismatch: k')", 0),  # a script's own error
        ]
        for call in calls:
            with pytest.raises(ResponseError) as shared:
                await call(client)
            with pytest.raises(ResponseError) as pooled:
                await call(plain)
            assert (type(shared.value), str(shared.value)) == (type(pooled.value), str(pooled.value))
    finally:
        await plain.delete(k)


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
    c = autopipelined(f"127.0.0.1:{free_port()}", dialTimeout="1s")
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
    c = autopipelined(f"127.0.0.1:{port}", readTimeout="200ms")
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


async def test_no_command_waits_longer_than_the_read_timeout() -> None:
    """A server that answers one slow reply, then stalls: the command queued behind it fails
    `readTimeout` after it was queued, not a whole period after the last reply came."""
    accepted: list[asyncio.StreamWriter] = []

    async def one_slow_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.readuntil(b"$1\r\na\r\n")  # the first command's key
        await asyncio.sleep(0.3)
        writer.write(b"$-1\r\n")
        await writer.drain()

    server = await asyncio.start_server(one_slow_reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = autopipelined(f"127.0.0.1:{port}", readTimeout="400ms")
    try:
        start = time.monotonic()
        first, second = c.get("a"), c.get("b")
        results = await asyncio.gather(first, second, return_exceptions=True)
        took = time.monotonic() - start
        assert results[0] is None
        assert isinstance(results[1], RedisTimeoutError)
        # The old per-period watchdog saw the slow reply and waited a second period (0.8 s).
        assert took < 0.6, took
    finally:
        await c.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_connect_opts_in() -> None:
    require("redis")
    settings = RedisSettings.from_metadata(Metadata({"redisHost": "127.0.0.1:6379", "redisDB": "1"}, where="test"))
    c = connect(settings, autopipeline=True)
    plain = aioredis.Redis(host="127.0.0.1", port=6379, db=1)
    k = key()
    try:
        assert isinstance(c, AutoPipelineRedis)
        await c.set(k, "in-db-1")
        assert await plain.get(k) == b"in-db-1"  # SELECT was sent on the shared connection
        assert not isinstance(connect(settings), AutoPipelineRedis)
    finally:
        await plain.delete(k)
        await plain.aclose()
        await c.aclose()
