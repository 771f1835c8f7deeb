"""One suite for every output binding: each backend is a row in BACKENDS, not new test code.

A backend row says how to write, read and delete one record with its own operations, and
how to read the bytes back from a reply; the tests are the same for all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import InvokeRequest, InvokeResponse, OutputBinding
from layotto.errors import BackendUnavailableError
from layotto.runtime import registry
from tests.conformance.bindings.httpkv import http_server
from tests.support.services import POSTGRES_DSN, require
from tests.support.sidecar import free_port

#: One table for the postgres row, created and dropped by this module.
PG_TABLE = f"layotto_test_binding_{uuid.uuid4().hex[:12]}"


@dataclass
class Backend:
    type: str
    #: Metadata of a working component; gets the test HTTP server's base URL.
    metadata: Callable[[str], dict[str, Any]]
    #: Metadata pointing at nothing (a closed port).
    dead_metadata: Callable[[], dict[str, Any]]
    write: Callable[[str, bytes], InvokeRequest]
    read: Callable[[str], InvokeRequest]
    delete: Callable[[str], InvokeRequest]
    #: The record's bytes from a read reply; b"" when there is no record.
    value: Callable[[InvokeResponse], bytes] = lambda reply: reply.data
    service: str | None = None


def _pg_value(reply: InvokeResponse) -> bytes:
    rows = json.loads(reply.data)
    return base64.b64decode(rows[0][0]) if rows else b""


BACKENDS = [
    Backend(
        type="http",
        metadata=lambda base: {"url": f"{base}/kv"},
        dead_metadata=lambda: {"url": f"http://127.0.0.1:{free_port()}/kv"},
        write=lambda k, v: InvokeRequest("create", v, {"path": k}),
        read=lambda k: InvokeRequest("get", b"", {"path": k}),
        delete=lambda k: InvokeRequest("delete", b"", {"path": k}),
    ),
    Backend(
        type="redis",
        metadata=lambda base: {"redisHost": "127.0.0.1:6379", "maxRetries": "0"},
        dead_metadata=lambda: {"redisHost": f"127.0.0.1:{free_port()}", "maxRetries": "0", "dialTimeout": "1s"},
        write=lambda k, v: InvokeRequest("create", v, {"key": f"layotto-test-binding-{k}"}),
        read=lambda k: InvokeRequest("get", b"", {"key": f"layotto-test-binding-{k}"}),
        delete=lambda k: InvokeRequest("delete", b"", {"key": f"layotto-test-binding-{k}"}),
        service="redis",
    ),
    Backend(
        type="postgresql",
        metadata=lambda base: {"url": POSTGRES_DSN},
        dead_metadata=lambda: {"url": f"postgresql://postgres@127.0.0.1:{free_port()}/test", "connectTimeout": "1s"},
        write=lambda k, v: InvokeRequest(
            "exec",
            b"",
            {
                "sql": f"INSERT INTO {PG_TABLE} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                "params": json.dumps([k, base64.b64encode(v).decode()]),
            },
        ),
        read=lambda k: InvokeRequest(
            "query", b"", {"sql": f"SELECT v FROM {PG_TABLE} WHERE k = $1", "params": json.dumps([k])}
        ),
        delete=lambda k: InvokeRequest(
            "exec", b"", {"sql": f"DELETE FROM {PG_TABLE} WHERE k = $1", "params": json.dumps([k])}
        ),
        value=_pg_value,
        service="postgresql",
    ),
]


async def _create(backend: Backend, metadata: dict[str, Any]) -> OutputBinding:
    component = registry.create("bindings", backend.type)
    assert isinstance(component, OutputBinding)
    await component.init(Metadata(metadata, where="test"), ComponentContext("b", "bindings", "app"))
    return component


@pytest.fixture(scope="module")
async def pg_table() -> AsyncIterator[None]:
    require("postgresql")
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f"CREATE TABLE {PG_TABLE} (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        yield
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {PG_TABLE}")
        await conn.close()


@pytest.fixture(params=BACKENDS, ids=lambda b: b.type)
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    if chosen.service:
        require(chosen.service)
    if chosen.type == "postgresql":
        request.getfixturevalue("pg_table")
    return chosen


@pytest.fixture
async def binding(backend: Backend) -> AsyncIterator[OutputBinding]:
    async with http_server() as base:
        component = await _create(backend, backend.metadata(base))
        try:
            yield component
        finally:
            await component.close()


def _key() -> str:
    return uuid.uuid4().hex


async def test_lists_its_operations(binding: OutputBinding, backend: Backend) -> None:
    ops = binding.operations()
    assert ops and len(set(ops)) == len(ops)
    for request in (backend.write("k", b""), backend.read("k"), backend.delete("k")):
        assert request.operation in ops
    assert ops == binding.operations(), "the order is shown in error messages and must be stable"


async def test_write_then_read_returns_the_bytes(binding: OutputBinding, backend: Backend) -> None:
    key = _key()
    payload = bytes(range(256)) * 4
    await binding.invoke(backend.write(key, payload))
    reply = await binding.invoke(backend.read(key))
    assert backend.value(reply) == payload
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in reply.metadata.items())


async def test_delete_removes(binding: OutputBinding, backend: Backend) -> None:
    key = _key()
    await binding.invoke(backend.write(key, b"gone soon"))
    await binding.invoke(backend.delete(key))
    assert backend.value(await binding.invoke(backend.read(key))) == b""


async def test_overwrite_keeps_the_last_value(binding: OutputBinding, backend: Backend) -> None:
    key = _key()
    await binding.invoke(backend.write(key, b"first"))
    await binding.invoke(backend.write(key, b"second"))
    assert backend.value(await binding.invoke(backend.read(key))) == b"second"


async def test_many_concurrent_calls_share_the_pool(binding: OutputBinding, backend: Backend) -> None:
    keys = [_key() for _ in range(64)]
    await asyncio.gather(*(binding.invoke(backend.write(k, str(i).encode())) for i, k in enumerate(keys)))
    replies = await asyncio.gather(*(binding.invoke(backend.read(k)) for k in keys))
    assert [backend.value(r) for r in replies] == [str(i).encode() for i in range(64)]


async def test_an_unreachable_backend_is_unavailable(backend: Backend) -> None:
    try:
        component = await _create(backend, backend.dead_metadata())
    except BackendUnavailableError:
        return  # refusing to start is as clear as failing the call
    try:
        with pytest.raises(BackendUnavailableError):
            await component.invoke(backend.read(_key()))
    finally:
        await component.close()


async def test_close_twice_is_harmless(backend: Backend) -> None:
    async with http_server() as base:
        component = await _create(backend, backend.metadata(base))
        await component.close()
        await component.close()
