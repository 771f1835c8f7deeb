"""One suite for every output binding, through the block interface: each backend is a row of
ROWS (tests/support/rows.BackendRow), not new test code.

A row's traits say how to write, read and delete one record with its own operations, and how
to read the bytes back from a reply; the tests are the same for all. Output bindings have no
optional features: what each one can do is its list of `operations()`.
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
from tests.contract.bindings.httpkv import http_server
from tests.support.rows import BackendRow, params
from tests.support.services import POSTGRES_DSN, require
from tests.support.sidecar import free_port

#: One table for the postgres row, created and dropped by this module.
PG_TABLE = f"layotto_test_binding_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class BindingTraits:
    """How to write, read and delete one record with the binding's own operations."""

    #: Metadata pointing at nothing (a closed port).
    dead_metadata: Callable[[], dict[str, Any]]
    write: Callable[[str, bytes], InvokeRequest]
    read: Callable[[str], InvokeRequest]
    delete: Callable[[str], InvokeRequest]
    #: The record's bytes from a read reply; b"" when there is no record.
    value: Callable[[InvokeResponse], bytes] = lambda reply: reply.data


#: A row's metadata is a function of the test HTTP server's base URL.
Row = BackendRow[BindingTraits]


def _pg_value(reply: InvokeResponse) -> bytes:
    rows = json.loads(reply.data)
    return base64.b64decode(rows[0][0]) if rows else b""


ROWS: list[Row] = [
    BackendRow(
        block="bindings",
        type="http",
        metadata=lambda base: {"url": f"{base}/kv"},
        traits=BindingTraits(
            dead_metadata=lambda: {"url": f"http://127.0.0.1:{free_port()}/kv"},
            write=lambda k, v: InvokeRequest("create", v, {"path": k}),
            read=lambda k: InvokeRequest("get", b"", {"path": k}),
            delete=lambda k: InvokeRequest("delete", b"", {"path": k}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="redis",
        metadata=lambda base: {"redisHost": "127.0.0.1:6379", "maxRetries": "0"},
        requires=("redis",),
        traits=BindingTraits(
            dead_metadata=lambda: {"redisHost": f"127.0.0.1:{free_port()}", "maxRetries": "0", "dialTimeout": "1s"},
            write=lambda k, v: InvokeRequest("create", v, {"key": f"layotto-test-binding-{k}"}),
            read=lambda k: InvokeRequest("get", b"", {"key": f"layotto-test-binding-{k}"}),
            delete=lambda k: InvokeRequest("delete", b"", {"key": f"layotto-test-binding-{k}"}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="postgresql",
        metadata=lambda base: {"url": POSTGRES_DSN},
        requires=("postgresql",),
        traits=BindingTraits(
            dead_metadata=lambda: {
                "url": f"postgresql://postgres@127.0.0.1:{free_port()}/test",
                "connectTimeout": "1s",
            },
            write=lambda k, v: InvokeRequest(
                "exec",
                b"",
                {
                    "sql": f"INSERT INTO {PG_TABLE} (k, v) VALUES ($1, $2)"
                    " ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
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
        ),
    ),
]


async def _create(backend: Row, metadata: dict[str, Any]) -> OutputBinding:
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


@pytest.fixture(params=params(ROWS))
def backend(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    if chosen.type == "postgresql":
        request.getfixturevalue("pg_table")
    return chosen


@pytest.fixture
async def binding(backend: Row) -> AsyncIterator[OutputBinding]:
    async with http_server() as base:
        component = await _create(backend, backend.meta(base))
        try:
            yield component
        finally:
            await component.close()


def _key() -> str:
    return uuid.uuid4().hex


async def test_lists_its_operations(binding: OutputBinding, backend: Row) -> None:
    ops = binding.operations()
    assert ops and len(set(ops)) == len(ops)
    for request in (backend.traits.write("k", b""), backend.traits.read("k"), backend.traits.delete("k")):
        assert request.operation in ops
    assert ops == binding.operations(), "the order is shown in error messages and must be stable"


async def test_write_then_read_returns_the_bytes(binding: OutputBinding, backend: Row) -> None:
    key = _key()
    payload = bytes(range(256)) * 4
    await binding.invoke(backend.traits.write(key, payload))
    reply = await binding.invoke(backend.traits.read(key))
    assert backend.traits.value(reply) == payload
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in reply.metadata.items())


async def test_delete_removes(binding: OutputBinding, backend: Row) -> None:
    key = _key()
    await binding.invoke(backend.traits.write(key, b"gone soon"))
    await binding.invoke(backend.traits.delete(key))
    assert backend.traits.value(await binding.invoke(backend.traits.read(key))) == b""


async def test_overwrite_keeps_the_last_value(binding: OutputBinding, backend: Row) -> None:
    key = _key()
    await binding.invoke(backend.traits.write(key, b"first"))
    await binding.invoke(backend.traits.write(key, b"second"))
    assert backend.traits.value(await binding.invoke(backend.traits.read(key))) == b"second"


async def test_many_concurrent_calls_share_the_pool(binding: OutputBinding, backend: Row) -> None:
    keys = [_key() for _ in range(64)]
    await asyncio.gather(*(binding.invoke(backend.traits.write(k, str(i).encode())) for i, k in enumerate(keys)))
    replies = await asyncio.gather(*(binding.invoke(backend.traits.read(k)) for k in keys))
    assert [backend.traits.value(r) for r in replies] == [str(i).encode() for i in range(64)]


async def test_an_unreachable_backend_is_unavailable(backend: Row) -> None:
    try:
        component = await _create(backend, backend.traits.dead_metadata())
    except BackendUnavailableError:
        return  # refusing to start is as clear as failing the call
    try:
        with pytest.raises(BackendUnavailableError):
            await component.invoke(backend.traits.read(_key()))
    finally:
        await component.close()


async def test_close_twice_is_harmless(backend: Row) -> None:
    async with http_server() as base:
        component = await _create(backend, backend.meta(base))
        await component.close()
        await component.close()
