"""InvokeBinding through a running sidecar: upstream's checks, codes and messages; http and redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as aioredis

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.bindings.httpkv import http_server, parse
from tests.support.services import POSTGRES_DSN, require
from tests.support.sidecar import free_port, running_sidecar

Stub = runtime_pb2_grpc.RuntimeStub


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[Stub]:
    require("redis")
    require("postgresql")
    async with http_server() as base:
        config = {
            "bindings": {
                "web": {"type": "http", "metadata": {"url": base}},
                "dead": {"type": "http", "metadata": {"url": f"http://127.0.0.1:{free_port()}"}},
                "cache": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}},
                "db": {"type": "postgresql", "metadata": {"url": POSTGRES_DSN}},
            }
        }
        async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
            yield Stub(channel)


async def _fails(call: object, code: grpc.StatusCode, details: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert (info.value.code(), info.value.details()) == (code, details)


async def test_upstream_errors_in_upstream_order(stub: Stub) -> None:
    internal = grpc.StatusCode.INTERNAL
    await _fails(
        stub.InvokeBinding(pb.InvokeBindingRequest(name="nope")),
        internal,
        "error when invoke output binding nope: operation field is missing from request",
    )
    await _fails(
        stub.InvokeBinding(pb.InvokeBindingRequest(name="nope", operation="get")),
        internal,
        "error when invoke output binding nope: couldn't find output binding nope",
    )
    await _fails(
        stub.InvokeBinding(pb.InvokeBindingRequest(name="cache", operation="list")),
        internal,
        "error when invoke output binding cache: binding cache does not support operation list."
        " supported operations:create delete get increment",
    )


async def test_http_request_shape_and_reply_metadata(stub: Stub) -> None:
    reply = await stub.InvokeBinding(
        pb.InvokeBindingRequest(
            name="web",
            operation="post",
            data=b'{"a": 1}',
            metadata={"path": "/orders/7?x=1", "X-Trace": "t-1", "lowercase": "not a header"},
        )
    )
    echoed = parse(reply.data)
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/orders/7"
    assert echoed["query"] == "x=1"
    assert echoed["body"] == '{"a": 1}'
    headers = echoed["headers"]
    assert isinstance(headers, dict)
    assert headers["X-Trace"] == "t-1"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert "lowercase" not in {h.lower() for h in headers}
    assert reply.metadata["statusCode"] == "200"
    assert reply.metadata["status"] == "200 OK"
    assert reply.metadata["X-Echo"] == "yes"
    assert reply.metadata["Content-Type"].startswith("application/json")


async def test_http_create_is_post_and_get_sends_no_body(stub: Stub) -> None:
    created = await stub.InvokeBinding(pb.InvokeBindingRequest(name="web", operation="create", data=b"x"))
    assert parse(created.data)["method"] == "POST"
    got = await stub.InvokeBinding(
        pb.InvokeBindingRequest(name="web", operation="get", data=b"ignored", metadata={"Content-Type": "text/x"})
    )
    assert parse(got.data)["method"] == "GET"
    assert parse(got.data)["body"] == ""


async def test_http_non_2xx_is_an_error(stub: Stub) -> None:
    await _fails(
        stub.InvokeBinding(pb.InvokeBindingRequest(name="web", operation="get", metadata={"path": "status/404"})),
        grpc.StatusCode.INTERNAL,
        "error when invoke output binding web: received status code 404",
    )


async def test_http_path_cannot_climb(stub: Stub) -> None:
    await _fails(
        stub.InvokeBinding(pb.InvokeBindingRequest(name="web", operation="get", metadata={"path": "../etc"})),
        grpc.StatusCode.INTERNAL,
        "error when invoke output binding web: invalid path: ../etc",
    )


async def test_http_unreachable_is_unavailable(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.InvokeBinding(pb.InvokeBindingRequest(name="dead", operation="get"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details().startswith('error when invoke output binding dead: GET "http://127.0.0.1:')


async def test_redis_operations(stub: Stub) -> None:
    key = f"layotto-test-binding-{uuid.uuid4().hex}"
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        await stub.InvokeBinding(
            pb.InvokeBindingRequest(
                name="cache", operation="create", data=b"v", metadata={"key": key, "ttlInSeconds": "100"}
            )
        )
        assert await client.get(key) == b"v"
        assert 0 < await client.ttl(key) <= 100
        got = await stub.InvokeBinding(
            pb.InvokeBindingRequest(name="cache", operation="get", metadata={"key": key, "delete": "true"})
        )
        assert got.data == b"v"
        assert await client.exists(key) == 0
        counter = key + "-n"
        for expected in (b"1", b"2"):
            reply = await stub.InvokeBinding(
                pb.InvokeBindingRequest(name="cache", operation="increment", metadata={"key": counter})
            )
            assert reply.data == expected
        await stub.InvokeBinding(pb.InvokeBindingRequest(name="cache", operation="delete", metadata={"key": counter}))
        assert await client.exists(counter) == 0
    finally:
        await client.delete(key, key + "-n")
        await client.aclose()


async def test_redis_bad_requests(stub: Stub) -> None:
    await _fails(
        stub.InvokeBinding(pb.InvokeBindingRequest(name="cache", operation="get")),
        grpc.StatusCode.INTERNAL,
        "error when invoke output binding cache: redis binding: missing key in request metadata",
    )
    await _fails(
        stub.InvokeBinding(
            pb.InvokeBindingRequest(name="cache", operation="create", metadata={"key": "k", "ttlInSeconds": "soon"})
        ),
        grpc.StatusCode.INTERNAL,
        "error when invoke output binding cache: value must be a valid integer: actual is 'soon'",
    )


async def test_postgresql_query_exec_and_errors(stub: Stub) -> None:
    reply = await stub.InvokeBinding(
        pb.InvokeBindingRequest(
            name="db",
            operation="query",
            metadata={"sql": "SELECT $1::int AS n, 'x' AS s, NULL AS z", "params": "[7]"},
        )
    )
    assert json.loads(reply.data) == [[7, "x", None]]
    assert reply.metadata["operation"] == "query"
    assert {"start-time", "end-time", "duration", "sql"} <= set(reply.metadata)
    reply = await stub.InvokeBinding(
        pb.InvokeBindingRequest(name="db", operation="exec", metadata={"sql": "SELECT generate_series(1, 3)"})
    )
    assert reply.metadata["rows-affected"] == "3"
    await _fails(
        stub.InvokeBinding(pb.InvokeBindingRequest(name="db", operation="exec")),
        grpc.StatusCode.INTERNAL,
        "error when invoke output binding db: required metadata not set: sql",
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.InvokeBinding(pb.InvokeBindingRequest(name="db", operation="query", metadata={"sql": "SELEC 1"}))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details().startswith("error when invoke output binding db: error executing SELEC 1: syntax error")
