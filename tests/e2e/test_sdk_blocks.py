"""The Python SDK against a running sidecar: configuration (incl. subscriptions), file,
secrets and bindings, async and sync clients."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from layotto_sdk import AsyncClient, AsyncConfigurationSubscription, Client, ConfigurationItem, LayottoError

from tests.support.services import require
from tests.support.sidecar import running_sidecar

APP_ID = "sdk-blocks"
ENV_PREFIX = f"SDK_E2E_{uuid.uuid4().hex[:8].upper()}_"


def _write_json(path: str, document: object) -> None:
    with open(path, "w") as f:
        json.dump(document, f)


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[tuple[str, str]]:
    require("redis")
    root = tempfile.mkdtemp(prefix="layotto-sdk-files-")
    secrets_file = os.path.join(root, "secrets.json")
    _write_json(secrets_file, {"db": {"user": "admin", "password": "s3cret"}, "token": "t0k"})
    os.environ[ENV_PREFIX + "API_KEY"] = "k-123"
    config = {
        "app": {"app_id": APP_ID},
        "config_store": {
            "mem": {"type": "in-memory"},
            "redis": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379", "keyLayout": "layotto"}},
        },
        "file": {"local": {"type": "local", "metadata": {"rootPath": os.path.join(root, "files")}}},
        "secret_store": {
            "env": {"type": "local.env", "metadata": {"prefix": ENV_PREFIX}},
            "file": {"type": "local.file", "metadata": {"secretsFile": secrets_file}},
        },
        "bindings": {"cache": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379"}}},
    }
    try:
        async with running_sidecar(config) as (_, address):
            yield address, root
    finally:
        os.environ.pop(ENV_PREFIX + "API_KEY", None)


@pytest.fixture
async def client(world: tuple[str, str]) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(world[0], timeout=10) as c:
        yield c


def _name() -> str:
    return f"sdk-{uuid.uuid4().hex[:12]}"


# ---- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["mem", "redis"])
async def test_configuration_save_get_delete(client: AsyncClient, store: str) -> None:
    group, a, b = _name(), _name(), _name()
    await client.save_configuration(
        store,
        [
            ConfigurationItem(a, "content-a", group=group, label="prod", tags={"owner": "team"}),
            ConfigurationItem(b, "content-b", group=group, label="prod"),
        ],
        app_id=APP_ID,
    )
    items = await client.get_configuration(store, [a, b], app_id=APP_ID, group=group, label="prod")
    by_key = {i.key: i for i in items}
    assert by_key[a].content == "content-a" and dict(by_key[a].tags) == {"owner": "team"}
    assert (by_key[b].content, by_key[b].group, by_key[b].label) == ("content-b", group, "prod")
    await client.delete_configuration(store, [a], app_id=APP_ID, group=group, label="prod")
    left = await client.get_configuration(store, [a, b], app_id=APP_ID, group=group, label="prod")
    assert [i.key for i in left] == [b]


async def _next_content(
    client: AsyncClient, changes: AsyncConfigurationSubscription, store: str, key: str, group: str
) -> str:
    """Save a new value until the subscription reports it (the watch starts asynchronously)."""
    for attempt in range(10):
        value = f"v{attempt}"
        await client.save_configuration(store, [ConfigurationItem(key, value, group=group)], app_id=APP_ID)
        try:
            while True:
                batch = await asyncio.wait_for(anext(changes), 1.0)
                for item in batch:
                    if item.key == key and item.content == value:
                        return value
        except TimeoutError:
            continue
    raise AssertionError("no configuration change arrived")


@pytest.mark.parametrize("store", ["mem", "redis"])
async def test_configuration_subscription_reports_changes(client: AsyncClient, store: str) -> None:
    group, key = _name(), _name()
    async with client.subscribe_configuration(store, [key], app_id=APP_ID, group=group) as changes:
        assert await _next_content(client, changes, store, key, group)


async def test_configuration_errors(client: AsyncClient) -> None:
    with pytest.raises(LayottoError) as info:
        await client.get_configuration("nope", ["k"])
    assert info.value.code == grpc.StatusCode.UNKNOWN and "nope" in info.value.message
    with pytest.raises(LayottoError) as info:
        async with client.subscribe_configuration("nope", ["k"]) as changes:
            await asyncio.wait_for(anext(changes), 5)
    assert (info.value.code, info.value.message) == (
        grpc.StatusCode.UNKNOWN,
        "configure store [nope] don't support now",
    )


# ---- file ---------------------------------------------------------------------------------


async def test_file_put_get_list_meta_delete(client: AsyncClient) -> None:
    folder = _name()
    big = os.urandom(250 * 1024)  # several chunks each way
    await client.put_file("local", f"{folder}/big.bin", big)

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"hello ", b"world"):
            yield part

    await client.put_file("local", f"{folder}/hello.txt", chunks())
    assert await client.read_file("local", f"{folder}/big.bin") == big
    pieces = [c async for c in client.get_file("local", f"{folder}/hello.txt")]
    assert b"".join(pieces) == b"hello world"
    listing = await client.list_file("local", folder)
    assert sorted(f.name.rsplit("/", 1)[-1] for f in listing.files) == ["big.bin", "hello.txt"]
    meta = await client.get_file_meta("local", f"{folder}/big.bin")
    assert meta.size == len(big) and meta.last_modified
    await client.del_file("local", f"{folder}/big.bin")
    with pytest.raises(LayottoError) as info:
        await client.get_file_meta("local", f"{folder}/big.bin")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(LayottoError) as info:
        await client.read_file("notexists", "x")
    assert (info.value.code, info.value.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "not supported store type: notexists",
    )


def _sync_files(address: str) -> None:
    folder = _name()
    with Client(address) as client:
        client.put_file("local", f"{folder}/a.txt", iter([b"a", b"b", b"c"]))
        assert b"".join(client.get_file("local", f"{folder}/a.txt")) == b"abc"
        assert [f.size for f in client.list_file("local", folder).files] == [3]
        assert client.get_file_meta("local", f"{folder}/a.txt").size == 3
        client.del_file("local", f"{folder}/a.txt")
        with pytest.raises(LayottoError) as info:
            client.read_file("local", f"{folder}/a.txt")
        assert info.value.code == grpc.StatusCode.INTERNAL and info.value.message.startswith("get file fail,err: ")


async def test_sync_file_client(world: tuple[str, str]) -> None:
    await asyncio.to_thread(_sync_files, world[0])


# ---- secrets and bindings ---------------------------------------------------------------------


async def test_secrets(client: AsyncClient) -> None:
    assert await client.get_secret("env", "API_KEY") == {"API_KEY": "k-123"}
    assert await client.get_secret("file", "db:password") == {"db:password": "s3cret"}
    bulk = await client.get_bulk_secret("file")
    assert bulk["token"] == {"token": "t0k"} and bulk["db:user"] == {"db:user": "admin"}
    with pytest.raises(LayottoError) as info:
        await client.get_secret("nope", "x")
    assert (info.value.code, info.value.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "error when get secret but not find : nope",
    )


async def test_bindings(client: AsyncClient) -> None:
    key = _name()
    await client.invoke_binding("cache", "create", {"a": 1}, metadata={"key": key})
    reply = await client.invoke_binding("cache", "get", metadata={"key": key})
    assert reply.json() == {"a": 1}
    await client.invoke_binding("cache", "delete", metadata={"key": key})
    with pytest.raises(LayottoError) as info:
        await client.invoke_binding("nope", "get")
    assert (info.value.code, info.value.message) == (
        grpc.StatusCode.INTERNAL,
        "error when invoke output binding nope: couldn't find output binding nope",
    )


def _sync_misc(address: str) -> None:
    with Client(address) as client:
        assert client.get_secret("env", "API_KEY") == {"API_KEY": "k-123"}
        key = _name()
        client.invoke_binding("cache", "create", "text", metadata={"key": key})
        assert client.invoke_binding("cache", "get", metadata={"key": key}).text() == "text"
        client.invoke_binding("cache", "delete", metadata={"key": key})
        group, item = _name(), _name()
        client.save_configuration("redis", [ConfigurationItem(item, "c", group=group)], app_id=APP_ID)
        got = client.get_configuration("redis", [item], app_id=APP_ID, group=group)
        assert [(i.key, i.content) for i in got] == [(item, "c")]
        with client.subscribe_configuration("nope", ["k"]) as changes, pytest.raises(LayottoError) as info:
            next(iter(changes))
        assert info.value.code == grpc.StatusCode.UNKNOWN


async def test_sync_secrets_bindings_configuration(world: tuple[str, str]) -> None:
    await asyncio.to_thread(_sync_misc, world[0])
