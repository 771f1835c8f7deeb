"""The redis configuration store's `dapr` key layout (its default), beyond the contract suites:
`keyLayout`, values as Dapr users write them with a plain client, keyspace notification
settings (kept, or refused by the server), changes missed while disconnected, and the
listeners of a Redis Cluster and behind Sentinel, through their failovers.

Keys are unique per test (the layout's keys are global to the database) and deleted after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from layotto.components.configuration.base import (
    ConfigItem,
    ConfigurationFeature,
    GetRequest,
    SetRequest,
    Subscription,
)
from layotto.components.configuration.redis import LayottoRedisConfigStore, RedisConfigStore
from layotto.components.configuration.redis_dapr import DaprRedisConfigStore
from layotto.errors import BackendUnavailableError, ConfigError, InvalidArgumentError
from tests.support.redis_cluster import MASTER_NAME, RedisClusterServers, SentinelGroup, _Server, shared_cluster
from tests.support.rows import BackendRow
from tests.support.services import require, require_binary
from tests.support.sidecar import free_port

LOCAL = {"redisHost": "127.0.0.1:6379"}
PUSH = 5.0
#: A failover (node timeout / down-after 1 s) and the listeners finding the new primary.
FAILOVER = 30.0


def unique(name: str) -> str:
    return f"dapr-layout-{name}-{uuid.uuid4().hex[:12]}"


async def made(metadata: dict[str, Any], name: str = "cfg") -> RedisConfigStore:
    store = await BackendRow(block="configuration", type="redis", metadata=metadata, traits=None).create(name=name)
    assert isinstance(store, RedisConfigStore)
    return store


@contextlib.asynccontextmanager
async def opened(metadata: dict[str, Any]) -> AsyncIterator[RedisConfigStore]:
    store = await made(metadata)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def plain() -> AsyncIterator[aioredis.Redis]:
    """A plain client of the shared server's database 0, as a Dapr user's redis-cli."""
    require("redis")
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def own_server() -> Iterator[Callable[..., _Server]]:
    """redis-server processes of this test's own (extra arguments per call), stopped after it."""
    servers: list[_Server] = []
    workdir = Path(tempfile.mkdtemp(prefix="layotto-config-dapr-"))

    def start(*args: str) -> _Server:
        server = _Server(
            require_binary("redis-server"),
            workdir / str(len(servers)),
            free_port(),
            ["--save", "", "--appendonly", "no", *args],
        )
        servers.append(server)
        server.start()
        server.wait_up()
        return server

    yield start
    for server in servers:
        server.stop()


def where(keys: list[str], group: str = "default", label: str = "default") -> GetRequest:
    return GetRequest(unique("app"), group, label, keys)


#: Items pushed to a subscription and not matched yet: one batch may answer several `until`s.
_UNREAD: weakref.WeakKeyDictionary[Subscription, list[ConfigItem]] = weakref.WeakKeyDictionary()


async def until(sub: Subscription, key: str, content: str, within: float = PUSH) -> ConfigItem:
    """The pushed item of `key` once it has `content`; earlier values of `key` are skipped."""
    unread = _UNREAD.setdefault(sub, [])

    async def wait() -> ConfigItem:
        while True:
            for n, item in enumerate(unread):
                if item.key == key and item.content == content:
                    unread[: n + 1] = [i for i in unread[:n] if i.key != key]
                    return item
            event = await sub.next_event()
            assert event is not None, "subscription ended"
            unread.extend(event.items)

    return await asyncio.wait_for(wait(), within)


async def retried(call: Callable[[], Awaitable[object]], within: float = FAILOVER) -> None:
    """`call` until it succeeds: a write while a failover is under way."""
    deadline = time.monotonic() + within
    while True:
        try:
            await call()
            return
        except (BackendUnavailableError, redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # nothing to await: the failover is the servers' own


# ---- keyLayout ----


async def test_key_layout_chooses_the_layout_and_defaults_to_dapr() -> None:
    require("redis")
    for metadata, layout, features in [
        ({}, DaprRedisConfigStore, frozenset()),
        ({"keyLayout": ""}, DaprRedisConfigStore, frozenset()),
        ({"keyLayout": "dapr"}, DaprRedisConfigStore, frozenset()),
        ({"keyLayout": "layotto"}, LayottoRedisConfigStore, frozenset({ConfigurationFeature.SCOPES})),
    ]:
        async with opened({**LOCAL, **metadata}) as store:
            assert isinstance(store.layout, layout), metadata
            assert store.features == features
            assert store.hub is store.layout.hub


async def test_an_unknown_key_layout_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as refused:
        await made({**LOCAL, "keyLayout": "etcd-like"}, name="cfg")
    assert refused.value.path == "configuration.cfg.metadata.keyLayout"
    assert "'dapr'" in str(refused.value) and "'layotto'" in str(refused.value) and "etcd-like" in str(refused.value)


async def test_the_layotto_layout_keeps_its_hashes(plain: aioredis.Redis) -> None:
    async with opened({**LOCAL, "keyLayout": "layotto"}) as store:
        scope = where([])
        await store.set(SetRequest(scope.app_id, [ConfigItem("k", "v", "default", "default", tags={"t": "1"})]))
        name = f"layotto-config:{scope.app_id}:default:default"
        try:
            assert await plain.hget(name, "k") == b"v"
            assert await plain.hget(name + ":tags", "k") == b'{"t": "1"}'
        finally:
            await plain.delete(name, name + ":tags")


# ---- values ----


async def test_values_as_dapr_users_write_them(plain: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    versioned, bare, three, no_value, empty, hashed = (unique(n) for n in ("v", "b", "3", "nv", "e", "h"))
    await plain.set(versioned, "100||1")
    await plain.set(bare, "200")
    await plain.set(three, "a||b||c")  # Dapr keeps the first two parts
    await plain.set(no_value, "||5")
    await plain.set(empty, "")
    await plain.hset(hashed, "field", "x")
    ours = [versioned, bare, three, no_value, empty, hashed]
    try:
        async with opened(LOCAL) as store:
            with caplog.at_level(logging.WARNING, "layotto.configuration.redis"):
                got = await store.get(where([*ours, unique("missing")], group="g", label="l"))
            assert [(i.key, i.content, i.metadata, i.group, i.label) for i in got] == [
                (versioned, "100", {"version": "1"}, "g", "l"),
                (bare, "200", {}, "g", "l"),
                (three, "a", {"version": "b"}, "g", "l"),
            ]
            assert [r for r in caplog.records if hashed in r.getMessage()], "no warning about the hash"
            every = {i.key for i in await store.get(where([]))}
            assert {versioned, bare, three} <= every and not every & {no_value, empty, hashed}
    finally:
        await plain.delete(*ours)


async def test_save_writes_value_and_version(plain: aioredis.Redis) -> None:
    versioned, bare = unique("v"), unique("b")
    async with opened(LOCAL) as store:
        scope = where([versioned, bare])
        try:
            await store.set(
                SetRequest(
                    scope.app_id,
                    [
                        ConfigItem(versioned, "v", "default", "default", metadata={"version": "7"}),
                        ConfigItem(bare, "w", "default", "default"),
                    ],
                )
            )
            assert await plain.mget(versioned, bare) == [b"v||7", b"w"]
            refused = [
                ConfigItem(bare, "a||b"),
                ConfigItem(bare, "a", metadata={"version": "1||2"}),
                ConfigItem(bare, "a", tags={"t": "1"}),
                ConfigItem("", "a"),
            ]
            for item in refused:
                with pytest.raises(InvalidArgumentError):
                    await store.set(SetRequest(scope.app_id, [item]))
            assert await plain.get(bare) == b"w"
            await store.delete(scope)
            assert await plain.exists(versioned, bare) == 0
        finally:
            await plain.delete(versioned, bare)


# ---- watching ----


async def test_a_subscription_sees_plain_writes_deletes_renames_and_expiry(plain: aioredis.Redis) -> None:
    k, renamed = unique("k"), unique("renamed")
    async with opened(LOCAL) as store:
        sub = await store.subscribe(where([k, renamed]))
        every = await store.subscribe(where([]))
        try:
            await plain.set(k, "1||a")
            for watching in (sub, every):
                item = await until(watching, k, "1")
                assert item.metadata == {"version": "a"}
            await plain.rename(k, renamed)
            await until(sub, k, "")
            await until(sub, renamed, "1")
            # Long enough to be read before it expires, or the change would be from missing to missing.
            await plain.set(k, "short-lived", px=500)
            await until(sub, k, "short-lived")
            await until(sub, k, "")  # expired
            await plain.delete(renamed)
            await until(every, renamed, "")
        finally:
            sub.close()
            every.close()
            await plain.delete(k, renamed)


async def test_a_write_while_subscribing_is_reported(plain: aioredis.Redis) -> None:
    """A write after subscribe() began, before the channel is subscribed: its event reaches
    nobody, and the read after the confirmation reports it (the subscription misses nothing
    written after it was asked for)."""
    k = unique("k")
    await plain.set(k, "before")
    async with opened(LOCAL) as store:
        layout = store.layout
        assert isinstance(layout, DaprRedisConfigStore)
        enable = layout.enable_notifications

        async def write_first(client: aioredis.Redis) -> None:  # runs just before SUBSCRIBE
            await plain.set(k, "while-subscribing")
            await enable(client)

        layout.enable_notifications = write_first  # type: ignore[method-assign]
        try:
            sub = await store.subscribe(where([k]))
            await until(sub, k, "while-subscribing")
        finally:
            await plain.delete(k)


async def test_channels_follow_the_subscriptions_and_name_the_database() -> None:
    require("redis")
    probe = aioredis.Redis(host="127.0.0.1", port=6379)
    a, b = unique("a"), unique("b")
    channel = {key: f"__keyspace@3__:{key}".encode() for key in (a, b)}

    async def listened() -> dict[bytes, int]:
        return dict(await probe.pubsub_numsub(*channel.values()))

    store = await made({**LOCAL, "redisDB": "3"})
    try:
        first = await store.subscribe(where([a]))
        second = await store.subscribe(where([b]))
        assert await listened() == {channel[a]: 1, channel[b]: 1}
        first.close()
        pruning = store.layout._pruning  # type: ignore[attr-defined]  # unsubscribing runs as a task
        assert pruning is not None
        await pruning
        assert await listened() == {channel[a]: 0, channel[b]: 1}
        second.close()
        assert not store._watchers
    finally:
        await store.close()
    assert await listened() == {channel[a]: 0, channel[b]: 0}
    await probe.aclose()


async def test_a_change_missed_while_disconnected_is_reported(own_server: Callable[..., _Server]) -> None:
    server = own_server()
    direct = aioredis.Redis(host="127.0.0.1", port=server.port)
    await direct.set("gone", "x")
    async with opened({"redisHost": f"127.0.0.1:{server.port}"}) as store:
        watched = await store.subscribe(where(["k", "gone"]))
        every = await store.subscribe(where([]))
        # The listener's connection dies before the writes: their events reach nobody, so only
        # reading again after subscribing again can report them.
        async with direct.pipeline(transaction=False) as pipe:
            pipe.client_kill_filter(_type="pubsub")
            pipe.set("k", "missed||2")
            pipe.delete("gone")
            await pipe.execute()
        for sub in (watched, every):
            assert (await until(sub, "k", "missed")).metadata == {"version": "2"}
            await until(sub, "gone", "")
    await direct.aclose()


async def test_a_refused_config_set_warns_once_and_events_still_flow(
    own_server: Callable[..., _Server], caplog: pytest.LogCaptureFixture
) -> None:
    """Managed Redis refuses CONFIG; notifications set by the operator work all the same."""
    server = own_server("--rename-command", "CONFIG", "", "--notify-keyspace-events", "KA")
    direct = aioredis.Redis(host="127.0.0.1", port=server.port)
    with caplog.at_level(logging.WARNING, "layotto.configuration.redis"):
        async with opened({"redisHost": f"127.0.0.1:{server.port}"}) as store:
            sub = await store.subscribe(where(["k"]))
            await direct.set("k", "1")
            await until(sub, "k", "1")
            await direct.client_kill_filter(_type="pubsub")  # a reconnect sets notifications again
            await direct.set("k", "2")
            await until(sub, "k", "2")
            await store.subscribe(where(["other"]))
    warnings = [r for r in caplog.records if "notify-keyspace-events" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "K$gx" in warnings[0].getMessage()
    await direct.aclose()


async def test_notification_flags_already_set_are_kept(own_server: Callable[..., _Server]) -> None:
    server = own_server("--notify-keyspace-events", "Ex")
    direct = aioredis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    async with opened({"redisHost": f"127.0.0.1:{server.port}"}) as store:
        sub = await store.subscribe(where(["k"]))
        flags = set((await direct.config_get("notify-keyspace-events"))["notify-keyspace-events"])
        assert {"K", "E", "A"} <= flags
        await direct.set("k", "v")
        await until(sub, "k", "v")
    await direct.aclose()


# ---- Redis Cluster and Sentinel ----


def _key_per_primary(cluster: redis.RedisCluster) -> list[str]:
    ports = {int(n.port) for n in cluster.get_primaries()}
    keys: dict[int, str] = {}
    while set(keys) != ports:
        key = unique("node")
        node = cluster.get_node_from_key(key)
        assert node is not None
        keys.setdefault(int(node.port), key)
    return list(keys.values())


async def test_a_cluster_is_watched_and_read_on_every_primary() -> None:
    servers = await asyncio.to_thread(shared_cluster)
    cluster = await asyncio.to_thread(servers.client)
    keys = _key_per_primary(cluster)
    async with opened({"redisHost": servers.seeds, "redisType": "cluster"}) as store:
        sub = await store.subscribe(where(keys))
        assert len(store._watchers) == len(keys) + 1  # a listener per primary, and the topology's
        every = await store.subscribe(where([]))
        try:
            for n, key in enumerate(keys):
                await asyncio.to_thread(cluster.set, key, f"{n}||v{n}")
            for n, key in enumerate(keys):
                for watching in (sub, every):
                    assert (await until(watching, key, str(n))).metadata == {"version": f"v{n}"}
            assert set(keys) <= {i.key for i in await store.get(where([]))}
            await asyncio.to_thread(cluster.delete, *keys)
            for key in keys:
                await until(sub, key, "")
        finally:
            sub.close()
            every.close()
            await asyncio.to_thread(cluster.delete, *keys)
            cluster.close()


@pytest.mark.slow
async def test_a_cluster_failover_is_followed() -> None:
    """SIGKILL the primary of a watched key: once its replica has taken over, the listener of
    the new primary reports a write made there."""
    servers = await asyncio.to_thread(RedisClusterServers(masters=3, replicas=1, node_timeout_ms=1000).start)
    cluster = await asyncio.to_thread(servers.client)
    try:
        key = unique("failover")
        async with opened({"redisHost": servers.seeds, "redisType": "cluster", "dialTimeout": "1s"}) as store:
            sub = await store.subscribe(where([key]))
            await store.set(SetRequest("app", [ConfigItem(key, "before")]))
            await until(sub, key, "before")
            owner = cluster.get_node_from_key(key)
            assert owner is not None
            next(s for s in servers.servers if s.port == owner.port).kill()
            await retried(lambda: store.set(SetRequest("app", [ConfigItem(key, "after")])))
            await until(sub, key, "after", FAILOVER)
            assert f"127.0.0.1:{owner.port}" not in store._watchers
    finally:
        cluster.close()
        await asyncio.to_thread(servers.stop)


@pytest.mark.slow
async def test_a_sentinel_failover_is_followed() -> None:
    group = await asyncio.to_thread(SentinelGroup(replicas=1, sentinels=3, down_after_ms=1000).start)
    metadata = {"redisHost": group.hosts, "failover": "true", "sentinelMasterName": MASTER_NAME}
    try:
        key = unique("failover")
        async with opened({**metadata, "dialTimeout": "1s"}) as store:
            sub = await store.subscribe(where([key]))
            await store.set(SetRequest("app", [ConfigItem(key, "before")]))
            await until(sub, key, "before")
            group.current_master().kill()
            await retried(lambda: store.set(SetRequest("app", [ConfigItem(key, "after")])))
            await until(sub, key, "after", FAILOVER)
    finally:
        await asyncio.to_thread(group.stop)
