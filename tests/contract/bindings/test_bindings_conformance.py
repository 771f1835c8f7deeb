"""One suite for every output binding, through the block interface: each backend is a row of
backends.ROWS (tests/support/rows.BackendRow), not new test code.

A row's traits say how to write, read and delete one record with its own operations, and how
to read the bytes back from a reply; the tests are the same for all. Output bindings have no
optional features: what each one can do is its list of `operations()`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import OutputBinding
from layotto.errors import BackendUnavailableError
from layotto.runtime.registry import ComponentRegistry
from tests.contract.bindings.backends import PG_TABLE, ROWS, Row
from tests.contract.bindings.httpkv import http_server
from tests.support.rows import params
from tests.support.services import POSTGRES_DSN, require


async def _create(backend: Row, metadata: dict[str, Any]) -> OutputBinding:
    component = ComponentRegistry().create("bindings", backend.type)
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


async def test_declares_no_features(binding: OutputBinding, backend: Row) -> None:
    assert binding.features == backend.features == frozenset()
