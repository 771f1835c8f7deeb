"""One suite for every configuration store: each backend is a row of backends.ROWS, not new code.

Everything goes through the gRPC server with raw stubs, as an app (or Layotto's SDKs) would.
Keys are unique per test (`client.key`): a store without SCOPES shares every key between apps.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest

from layotto.components.configuration.base import ConfigurationFeature, ConfigurationStore
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.configuration.backends import ROWS, Row
from tests.support.hooks import subscription_count, watcher_count
from tests.support.rows import params
from tests.support.sidecar import running_sidecar

STORE = "config_demo"
#: Upstream's subscribers must see a change within this (the brief's bound).
PUSH_DEADLINE = 1.0


def _grpc_config(backend: Row, app_id: str) -> dict[str, Any]:
    return {"app": {"app_id": app_id}, "config_store": {STORE: backend.entry()}}


@pytest.fixture(params=params(ROWS))
def backend(request: pytest.FixtureRequest) -> Row:
    b: Row = request.param
    b.require()
    return b


class Client:
    def __init__(self, sidecar: Sidecar, stub: runtime_pb2_grpc.RuntimeStub, app_id: str) -> None:
        self.sidecar = sidecar
        self.stub = stub
        self.app_id = app_id
        self.keys: set[str] = set()

    def key(self, name: str) -> str:
        """A key of this test's own, deleted when the test ends."""
        key = f"{self.app_id}.{name}"
        self.keys.add(key)
        return key

    @property
    def store(self) -> ConfigurationStore:
        component = self.sidecar.rt.get("configuration", STORE)
        assert isinstance(component, ConfigurationStore)
        return component

    async def save(self, *items: pb.ConfigurationItem, store: str = STORE) -> None:
        request = pb.SaveConfigurationRequest(store_name=store, app_id=self.app_id, items=items)
        await self.stub.SaveConfiguration(request)

    async def get(self, keys: list[str], group: str = "", label: str = "", store: str = STORE) -> list[Any]:
        reply = await self.stub.GetConfiguration(
            pb.GetConfigurationRequest(store_name=store, app_id=self.app_id, group=group, label=label, keys=keys)
        )
        return list(reply.items)

    async def delete(self, keys: list[str], group: str = "", label: str = "") -> None:
        await self.stub.DeleteConfiguration(
            pb.DeleteConfigurationRequest(store_name=STORE, app_id=self.app_id, group=group, label=label, keys=keys)
        )


class Stream:
    """A SubscribeConfiguration call kept open, with requests written as the test goes."""

    def __init__(self, stub: runtime_pb2_grpc.RuntimeStub) -> None:
        self.requests: asyncio.Queue[pb.SubscribeConfigurationRequest | None] = asyncio.Queue()
        self.call = stub.SubscribeConfiguration(self._requests())

    async def _requests(self) -> AsyncIterator[pb.SubscribeConfigurationRequest]:
        while (req := await self.requests.get()) is not None:
            yield req

    async def subscribe(self, app_id: str, keys: list[str], store: str = STORE, group: str = "") -> None:
        request = pb.SubscribeConfigurationRequest(store_name=store, app_id=app_id, keys=keys, group=group)
        await self.requests.put(request)

    async def next(self, within: float = PUSH_DEADLINE) -> pb.SubscribeConfigurationResponse:
        reply = await asyncio.wait_for(self.call.read(), within)
        assert reply is not grpc.aio.EOF, "stream ended"
        assert isinstance(reply, pb.SubscribeConfigurationResponse)
        return reply

    async def until(self, key: str, content: str, within: float = PUSH_DEADLINE) -> pb.SubscribeConfigurationResponse:
        """Read pushes until `key` has `content` (earlier pushes may carry other keys)."""
        deadline = time.monotonic() + within
        while True:
            reply = await self.next(max(0.01, deadline - time.monotonic()))
            if any(i.key == key and i.content == content for i in reply.items):
                return reply


async def _subscribed(client: Client, stream: Stream, keys: list[str]) -> None:
    """Subscribe and wait until the store has registered it (the RPC itself has no ack)."""
    before = subscription_count(client.store)
    await stream.subscribe(client.app_id, keys)
    await _poll(lambda: subscription_count(client.store) > before, "subscription registered")


async def _poll(check: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def client(backend: Row) -> AsyncIterator[Client]:
    app_id = f"app-{uuid.uuid4().hex[:12]}"
    async with running_sidecar(_grpc_config(backend, app_id)) as (sidecar, address):
        async with grpc.aio.insecure_channel(address) as channel:
            made = Client(sidecar, runtime_pb2_grpc.RuntimeStub(channel), app_id)
            try:
                yield made
            finally:
                if made.keys:
                    await made.delete(sorted(made.keys))


def _item(key: str, content: str, **kw: Any) -> pb.ConfigurationItem:
    return pb.ConfigurationItem(key=key, content=content, **kw)


async def test_save_get_with_defaults(client: Client, backend: Row) -> None:
    k1, k2 = client.key("k1"), client.key("k2")
    await client.save(_item(k1, "v1"), _item(k2, "v2"))
    items = await client.get([k1, client.key("missing")])
    assert [(i.key, i.content, i.group, i.label) for i in items] == [(k1, "v1", "default", "default")]
    # Blank-looking group/label mean the defaults too, as upstream strips spaces.
    assert [i.key for i in await client.get([k1], group=" ", label="  ")] == [k1]
    # No keys: every key of the app/group/label (without SCOPES, of the store).
    every = {i.key for i in await client.get([])}
    if ConfigurationFeature.SCOPES in backend.features:
        assert every == {k1, k2}
    else:
        assert {k1, k2} <= every


async def test_scopes_feature(client: Client, backend: Row) -> None:
    """SCOPES: tags are kept, and group, label and app each have their own items. Without it,
    they all see the same items, and tags are refused."""
    k, grouped = client.key("k"), client.key("grouped")
    other_app = Client(client.sidecar, client.stub, client.app_id + "-other")
    if ConfigurationFeature.SCOPES in backend.features:
        await client.save(_item(k, "v", tags={"env": "prod"}), _item(grouped, "g", group="g", label="l"))
        [item] = await client.get([k])
        assert (item.content, dict(item.tags)) == ("v", {"env": "prod"})
        assert [(i.key, i.content) for i in await client.get([grouped], group="g", label="l")] == [(grouped, "g")]
        assert await client.get([grouped]) == []
        assert await client.get([k], group="g") == []
        assert await other_app.get([k]) == []
        await client.delete([grouped], group="g", label="l")
    else:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.save(_item(k, "v", tags={"env": "prod"}))
        assert err.value.code() == grpc.StatusCode.UNKNOWN and "tags" in (err.value.details() or "")
        assert await client.get([k]) == []
        await client.save(_item(k, "v"))
        for where in ({"group": "g"}, {"label": "l"}):
            assert [(i.key, i.content) for i in await client.get([k], **where)] == [(k, "v")]
        assert [(i.key, i.content) for i in await other_app.get([k])] == [(k, "v")]


async def test_overwrite_replaces_content_and_tags(client: Client, backend: Row) -> None:
    k = client.key("k")
    tags = ConfigurationFeature.SCOPES in backend.features
    await client.save(_item(k, "one", tags={"a": "1", "b": "2"} if tags else {}))
    await client.save(_item(k, "two", tags={"a": "3"} if tags else {}))
    [item] = await client.get([k])
    assert (item.content, dict(item.tags)) == ("two", {"a": "3"} if tags else {})


async def test_delete(client: Client) -> None:
    k, longer = client.key("k"), client.key("k-longer")
    await client.save(_item(k, "v"), _item(longer, "w"))
    await client.delete([k, client.key("never-existed")])
    assert [i.key for i in await client.get([k, longer])] == [longer]


async def test_unknown_store_is_code_unknown(client: Client) -> None:
    calls = [
        client.stub.GetConfiguration(pb.GetConfigurationRequest(store_name="nope", keys=["k"])),
        client.stub.SaveConfiguration(pb.SaveConfigurationRequest(store_name="nope", items=[_item("k", "v")])),
        client.stub.DeleteConfiguration(pb.DeleteConfigurationRequest(store_name="nope", keys=["k"])),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.UNKNOWN
        assert err.value.details() == "configure store [nope] don't support now"


async def test_subscribe_pushes_changes_and_deletes(client: Client, backend: Row) -> None:
    k = client.key("k")
    await client.save(_item(k, "before"))
    stream = Stream(client.stub)
    try:
        await _subscribed(client, stream, [k])
        if ConfigurationFeature.SNAPSHOT in backend.features:
            first = await stream.next()
            assert [(i.key, i.content) for i in first.items] == [(k, "before")]
        started = time.monotonic()
        await client.save(_item(k, "after"), _item(client.key("not-watched"), "x"))
        reply = await stream.until(k, "after")
        assert time.monotonic() - started < PUSH_DEADLINE
        assert (reply.store_name, reply.app_id) == (STORE, client.app_id)
        assert all(i.key == k for i in reply.items)
        assert {(i.group, i.label) for i in reply.items} == {("default", "default")}
        await client.delete([k])
        await stream.until(k, "")
    finally:
        stream.call.cancel()


async def test_several_subscriptions_on_one_stream(client: Client) -> None:
    a, b = client.key("a"), client.key("b")
    stream = Stream(client.stub)
    try:
        await _subscribed(client, stream, [a])
        await _subscribed(client, stream, [b])
        await client.save(_item(a, "1"))
        await stream.until(a, "1")
        await client.save(_item(b, "2"))
        await stream.until(b, "2")
    finally:
        stream.call.cancel()


async def test_subscribe_unknown_store_ends_stream_with_unknown(client: Client) -> None:
    stream = Stream(client.stub)
    await stream.subscribe(client.app_id, ["k"], store="nope")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(stream.call.read(), 5)
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert err.value.details() == "configure store [nope] don't support now"


async def test_dropped_stream_releases_only_its_subscriptions(client: Client) -> None:
    store = client.store
    k = client.key("k")
    keep, drop = Stream(client.stub), Stream(client.stub)
    try:
        await _subscribed(client, keep, [k])
        await _subscribed(client, drop, [k])
        assert subscription_count(store) == 2
        drop.call.cancel()
        await _poll(lambda: subscription_count(store) == 1, "the dropped stream's subscription to close")
        # The other stream of the same store still works (upstream would have stopped it).
        await client.save(_item(k, "still-here"))
        await keep.until(k, "still-here")
    finally:
        keep.call.cancel()
    await _poll(lambda: subscription_count(store) == 0, "every subscription closed")
    await _poll(lambda: watcher_count(store) == 0, "no backend watch left running")


@pytest.mark.parametrize("backend", params(b for b in ROWS if b.traits.shared), indirect=True)
async def test_change_through_another_sidecar_reaches_subscriber(backend: Row) -> None:
    app_id = f"app-{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            sidecar, address = await stack.enter_async_context(running_sidecar(_grpc_config(backend, app_id)))
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(address))
            clients.append(Client(sidecar, runtime_pb2_grpc.RuntimeStub(channel), app_id))
        watcher, writer = clients
        shared = writer.key("shared")
        stream = Stream(watcher.stub)
        try:
            await _subscribed(watcher, stream, [shared])
            latencies = []
            for n in range(5):
                started = time.monotonic()
                await writer.save(_item(shared, f"v{n}"))
                await stream.until(shared, f"v{n}")
                latencies.append(time.monotonic() - started)
            assert max(latencies) < PUSH_DEADLINE
            print(f"\n{backend.id}: cross-sidecar push latency max {max(latencies) * 1000:.1f} ms")
        finally:
            stream.call.cancel()
            await writer.delete([shared])
