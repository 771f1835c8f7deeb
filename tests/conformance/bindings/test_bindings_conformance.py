"""One suite for every output binding: each backend is a row in BACKENDS, not new test code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import InvokeRequest, OutputBinding
from layotto.errors import BackendUnavailableError
from layotto.runtime import registry
from tests.conformance.bindings.httpkv import http_server
from tests.support.services import require
from tests.support.sidecar import free_port


@dataclass
class Backend:
    type: str
    #: Metadata of a working component; gets the test HTTP server's base URL.
    metadata: Callable[[str], dict[str, Any]]
    #: Metadata pointing at nothing (a closed port).
    dead_metadata: Callable[[], dict[str, Any]]
    #: Request metadata naming one record.
    key: Callable[[str], dict[str, str]]
    service: str | None = None


BACKENDS = [
    Backend(
        type="http",
        metadata=lambda base: {"url": f"{base}/kv"},
        dead_metadata=lambda: {"url": f"http://127.0.0.1:{free_port()}/kv"},
        key=lambda k: {"path": k},
    ),
    Backend(
        type="redis",
        metadata=lambda base: {"redisHost": "127.0.0.1:6379", "maxRetries": "0"},
        dead_metadata=lambda: {"redisHost": f"127.0.0.1:{free_port()}", "maxRetries": "0", "dialTimeout": "1s"},
        key=lambda k: {"key": f"layotto-test-binding-{k}"},
        service="redis",
    ),
]


async def _create(backend: Backend, metadata: dict[str, Any]) -> OutputBinding:
    component = registry.create("bindings", backend.type)
    assert isinstance(component, OutputBinding)
    await component.init(Metadata(metadata, where="test"), ComponentContext("b", "bindings", "app"))
    return component


@pytest.fixture(params=BACKENDS, ids=lambda b: b.type)
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    if chosen.service:
        require(chosen.service)
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


async def test_lists_its_operations(binding: OutputBinding) -> None:
    ops = binding.operations()
    assert {"create", "get", "delete"} <= set(ops)
    assert ops == binding.operations(), "the order is shown in error messages and must be stable"


async def test_create_then_get_returns_the_bytes(binding: OutputBinding, backend: Backend) -> None:
    key = backend.key(_key())
    payload = bytes(range(256)) * 4
    await binding.invoke(InvokeRequest("create", payload, dict(key)))
    reply = await binding.invoke(InvokeRequest("get", b"", dict(key)))
    assert reply.data == payload
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in reply.metadata.items())


async def test_delete_removes(binding: OutputBinding, backend: Backend) -> None:
    key = backend.key(_key())
    await binding.invoke(InvokeRequest("create", b"gone soon", dict(key)))
    await binding.invoke(InvokeRequest("delete", b"", dict(key)))
    reply = await binding.invoke(InvokeRequest("get", b"", dict(key)))
    assert reply.data == b""


async def test_overwrite_keeps_the_last_value(binding: OutputBinding, backend: Backend) -> None:
    key = backend.key(_key())
    await binding.invoke(InvokeRequest("create", b"first", dict(key)))
    await binding.invoke(InvokeRequest("create", b"second", dict(key)))
    assert (await binding.invoke(InvokeRequest("get", b"", dict(key)))).data == b"second"


async def test_many_concurrent_calls_share_the_pool(binding: OutputBinding, backend: Backend) -> None:
    keys = [backend.key(_key()) for _ in range(64)]
    await asyncio.gather(
        *(binding.invoke(InvokeRequest("create", str(i).encode(), dict(k))) for i, k in enumerate(keys))
    )
    replies = await asyncio.gather(*(binding.invoke(InvokeRequest("get", b"", dict(k))) for k in keys))
    assert [r.data for r in replies] == [str(i).encode() for i in range(64)]


async def test_an_unreachable_backend_is_unavailable(backend: Backend) -> None:
    try:
        component = await _create(backend, backend.dead_metadata())
    except BackendUnavailableError:
        return  # refusing to start is as clear as failing the call
    try:
        with pytest.raises(BackendUnavailableError):
            await component.invoke(InvokeRequest("get", b"", backend.key(_key())))
    finally:
        await component.close()


async def test_close_twice_is_harmless(backend: Backend) -> None:
    async with http_server() as base:
        component = await _create(backend, backend.metadata(base))
        await component.close()
        await component.close()
