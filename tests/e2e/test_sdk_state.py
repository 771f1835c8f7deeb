"""The Python SDK against a running sidecar: hello and the State API, async and sync clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from layotto_sdk import (
    AsyncClient,
    Client,
    Concurrency,
    Delete,
    LayottoError,
    StateItem,
    Upsert,
)

from tests.support.services import require
from tests.support.sidecar import running_sidecar

STORES = ["mem", "redis"]
CONFIG = {
    "hellos": {"helloworld": {"type": "helloworld", "hello": "greeting"}},
    "state": {
        "mem": {"type": "in-memory"},
        "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}},
    },
}


@pytest.fixture(scope="module")
async def address() -> AsyncIterator[str]:
    require("redis")
    async with running_sidecar(CONFIG) as (_, addr):
        yield addr


@pytest.fixture
async def client(address: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(address, timeout=10) as c:
        yield c


def _key() -> str:
    return f"sdk-{uuid.uuid4().hex}"


async def _fails(awaitable: object, code: grpc.StatusCode, message: str, *, prefix: bool = False) -> LayottoError:
    with pytest.raises(LayottoError) as info:
        await awaitable  # type: ignore[misc]
    assert info.value.code == code
    if prefix:
        assert info.value.message.startswith(message), info.value.message
    else:
        assert info.value.message == message
    return info.value


# ---- hello ------------------------------------------------------------------------------------


async def test_say_hello_echoes_data_and_reports_unknown_service(client: AsyncClient) -> None:
    reply = await client.say_hello("helloworld", "layotto", data=b"\x00payload")
    assert (reply.hello, reply.data) == ("greeting, layotto", b"\x00payload")
    assert (await client.say_hello()).hello == "greeting"
    await _fails(client.say_hello("nope"), grpc.StatusCode.UNKNOWN, "no instance found")


# ---- state, async -----------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
async def test_round_trip_of_bytes_text_and_json(client: AsyncClient, store: str) -> None:
    raw, text, doc = _key(), _key(), _key()
    await client.save_state(store, raw, b"\x00\xff")
    await client.save_state(store, text, "héllo")
    await client.save_state(store, doc, {"n": 1, "tags": ["a"]})
    got = await client.get_state(store, raw)
    assert got is not None and (got.key, got.data, got.etag) == (raw, b"\x00\xff", "1")
    got = await client.get_state(store, text)
    assert got is not None and got.text() == "héllo"
    got = await client.get_state(store, doc)
    assert got is not None and got.json() == {"n": 1, "tags": ["a"]}
    assert await client.get_state(store, _key()) is None
    await client.delete_state(store, raw)
    assert await client.get_state(store, raw) is None


@pytest.mark.parametrize("store", STORES)
async def test_etags_guard_concurrent_writers(client: AsyncClient, store: str) -> None:
    key = _key()
    await client.save_state(store, key, "v1")
    first = await client.get_state(store, key)
    assert first is not None
    await client.save_state(store, key, "v2", etag=first.etag)
    # A writer holding the old etag loses, and changes nothing.
    await _fails(
        client.save_state(store, key, "stale", etag=first.etag),
        grpc.StatusCode.ABORTED,
        f"failed saving state in state store {store}: ",
        prefix=True,
    )
    await _fails(
        client.save_state(store, key, "x", etag="not-a-number"),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"failed saving state in state store {store}: ",
        prefix=True,
    )
    await _fails(
        client.save_state(store, key, "again", etag=first.etag, concurrency=Concurrency.FIRST_WRITE),
        grpc.StatusCode.ABORTED,
        f"failed saving state in state store {store}: ",
        prefix=True,
    )
    current = await client.get_state(store, key)
    assert current is not None and current.text() == "v2" and current.etag != first.etag
    await _fails(
        client.delete_state(store, key, etag=first.etag),
        grpc.StatusCode.ABORTED,
        f"failed deleting state with key {key}: ",
        prefix=True,
    )
    # Last-write ignores the etag.
    await client.save_state(store, key, "v3", etag=first.etag, concurrency=Concurrency.LAST_WRITE)
    await client.delete_state(store, key, etag=str(int(current.etag) + 1))
    assert await client.get_state(store, key) is None


@pytest.mark.parametrize("store", STORES)
async def test_bulk_save_get_delete(client: AsyncClient, store: str) -> None:
    keys = [_key() for _ in range(3)]
    missing = _key()
    await client.save_state(store, [StateItem(k, f"value-{i}") for i, k in enumerate(keys)])
    items = await client.get_bulk_state(store, [*keys, missing], parallelism=2)
    by_key = {i.key: i for i in items}
    assert set(by_key) == {*keys, missing}
    assert [by_key[k].text() for k in keys] == ["value-0", "value-1", "value-2"]
    assert all(by_key[k].found and by_key[k].etag for k in keys)
    assert not by_key[missing].found
    await client.delete_bulk_state(store, [keys[0], StateItem(keys[1])])
    assert [i.found for i in await client.get_bulk_state(store, keys)] == [False, False, True]


@pytest.mark.parametrize("store", STORES)
async def test_transaction_applies_all_or_nothing(client: AsyncClient, store: str) -> None:
    a, b, c = _key(), _key(), _key()
    await client.save_state(store, b, "old")
    await client.execute_state_transaction(store, [Upsert(a, "1"), Delete(b), Upsert(c, {"x": 1})])
    assert (await client.get_state(store, b)) is None
    got_c = await client.get_state(store, c)
    assert got_c is not None and got_c.json() == {"x": 1}
    # A failed etag check rolls back the whole batch.
    await _fails(
        client.execute_state_transaction(store, [Upsert(b, "new"), Upsert(a, "2", etag="999")]),
        grpc.StatusCode.INTERNAL,
        "error while executing state transaction: ",
        prefix=True,
    )
    assert await client.get_state(store, b) is None
    got_a = await client.get_state(store, a)
    assert got_a is not None and got_a.text() == "1"


async def test_ttl_expires_the_key(client: AsyncClient) -> None:
    key = _key()
    await client.save_state("redis", key, "short-lived", ttl=1)
    assert await client.get_state("redis", key) is not None
    deadline = time.monotonic() + 5
    while await client.get_state("redis", key) is not None:
        assert time.monotonic() < deadline, "the key outlived its ttl"
        await asyncio.sleep(0.1)


async def test_errors_carry_upstream_codes_and_messages(client: AsyncClient) -> None:
    await _fails(client.get_state("nope", "k"), grpc.StatusCode.INVALID_ARGUMENT, "state store nope is not found")
    await _fails(client.save_state("nope", "k", "v"), grpc.StatusCode.INVALID_ARGUMENT, "state store nope is not found")
    await _fails(
        client.get_state("mem", "a||b"), grpc.StatusCode.UNKNOWN, "input key/keyPrefix 'a||b' can't contain '||'"
    )
    error = await _fails(
        client.delete_state("nope", "k"), grpc.StatusCode.INVALID_ARGUMENT, "state store nope is not found"
    )
    assert str(error) == "INVALID_ARGUMENT: state store nope is not found"


async def test_missing_value_and_mixed_forms_are_rejected_locally(client: AsyncClient) -> None:
    with pytest.raises(TypeError):
        await client.save_state("mem", "k")
    with pytest.raises(TypeError):
        await client.save_state("mem", [StateItem("k", "v")], etag="1")


# ---- state, sync (the blocking client runs in a worker thread; the sidecar on the loop) -----


def _sync_scenario(address: str, store: str) -> None:
    key, other = _key(), _key()
    with Client(address, timeout=10) as client:
        client.wait_ready(5)
        assert client.say_hello(name="sync").hello == "greeting, sync"
        client.save_state(store, key, {"v": 1}, metadata={"contentType": "application/json"})
        got = client.get_state(store, key)
        assert got is not None and got.json() == {"v": 1} and got.etag == "1"
        client.save_state(store, key, {"v": 2}, etag="1")
        with pytest.raises(LayottoError) as info:
            client.save_state(store, key, {"v": 3}, etag="1")
        assert info.value.code == grpc.StatusCode.ABORTED
        client.execute_state_transaction(store, [Upsert(other, b"o"), Delete(key, etag="2")])
        assert client.get_state(store, key) is None
        items = client.get_bulk_state(store, [key, other])
        assert [(i.key, i.found) for i in items] == [(key, False), (other, True)]
        client.delete_bulk_state(store, [other])
        assert client.get_state(store, other) is None
        with pytest.raises(LayottoError) as info:
            client.get_state("notexists-store", key)
        assert (info.value.code, info.value.message) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "state store notexists-store is not found",
        )


@pytest.mark.parametrize("store", STORES)
async def test_sync_client(address: str, store: str) -> None:
    await asyncio.to_thread(_sync_scenario, address, store)
