"""Every configuration store through its block interface (no gRPC): the basic contract, and
that the features a row declares are the ones the store has and behave as promised.

Keys are unique per test: a store without SCOPES shares every key between apps (Dapr's Redis
layout), so fixed names would meet other tests' data."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from layotto.components.configuration.base import (
    ChangeEvent,
    ConfigItem,
    ConfigurationFeature,
    ConfigurationStore,
    GetRequest,
    SetRequest,
    Subscription,
)
from layotto.errors import InvalidArgumentError
from tests.contract.configuration.backends import ROWS, Row
from tests.support.rows import params

#: How long a subscription that must stay silent is watched.
QUIET = 0.3
PUSH = 5.0


@pytest.fixture(params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture
async def store(row: Row) -> AsyncIterator[ConfigurationStore]:
    component = await row.create()
    assert isinstance(component, ConfigurationStore)
    try:
        yield component
    finally:
        await component.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def scope(store: ConfigurationStore, keys: list[str] | None = None) -> GetRequest:
    return GetRequest(unique("app"), store.default_group, store.default_label, keys or [])


def item(request: GetRequest, key: str, content: str) -> ConfigItem:
    return ConfigItem(key, content, request.group, request.label)


async def test_declares_exactly_the_rows_features(store: ConfigurationStore, row: Row) -> None:
    assert store.features == row.features
    assert all(isinstance(f, ConfigurationFeature) for f in store.features)


async def test_set_get_delete(store: ConfigurationStore, row: Row) -> None:
    where = scope(store)
    a, b = unique("a"), unique("b")
    await store.set(SetRequest(where.app_id, [item(where, a, "1"), item(where, b, "2")]))
    try:
        got = await store.get(GetRequest(where.app_id, where.group, where.label, [a, unique("missing")]))
        assert [(i.key, i.content) for i in got] == [(a, "1")]
        every = {i.key for i in await store.get(where)}
        if ConfigurationFeature.SCOPES in row.features:
            assert every == {a, b}
        else:  # every key of the store, this test's among them
            assert {a, b} <= every
        await store.delete(GetRequest(where.app_id, where.group, where.label, [a]))
        assert [i.key for i in await store.get(GetRequest(where.app_id, where.group, where.label, [a, b]))] == [b]
    finally:
        await store.delete(GetRequest(where.app_id, where.group, where.label, [a, b]))


async def test_scopes_feature(store: ConfigurationStore, row: Row) -> None:
    """SCOPES: an app, group and label each have their own items, with tags. Without it, keys are
    global to the store and tags are refused."""
    mine = scope(store)
    key = unique("k")
    others = [
        GetRequest(unique("other-app"), mine.group, mine.label, [key]),
        GetRequest(mine.app_id, "other-group", mine.label, [key]),
        GetRequest(mine.app_id, mine.group, "other-label", [key]),
    ]
    tagged = ConfigItem(key, "v", mine.group, mine.label, tags={"env": "prod"})
    try:
        if ConfigurationFeature.SCOPES in row.features:
            await store.set(SetRequest(mine.app_id, [tagged]))
            [got] = await store.get(GetRequest(mine.app_id, mine.group, mine.label, [key]))
            assert (got.content, got.tags) == ("v", {"env": "prod"})
            for other in others:
                assert await store.get(other) == [], other
        else:
            with pytest.raises(InvalidArgumentError):
                await store.set(SetRequest(mine.app_id, [tagged]))
            assert await store.get(GetRequest(mine.app_id, mine.group, mine.label, [key])) == []
            await store.set(SetRequest(mine.app_id, [item(mine, key, "v")]))
            for other in others:
                assert [(i.key, i.content) for i in await store.get(other)] == [(key, "v")], other
    finally:
        await store.delete(GetRequest(mine.app_id, mine.group, mine.label, [key]))


async def test_subscription_receives_changes_and_unsubscribe_ends_it(store: ConfigurationStore) -> None:
    k, other = unique("k"), unique("other")
    where = scope(store, [k])
    sub = await store.subscribe(where)
    try:
        await store.set(SetRequest(where.app_id, [item(where, k, "v1"), item(where, other, "x")]))
        event = await asyncio.wait_for(_until(sub, k, "v1"), PUSH)
        assert all(i.key == k for i in event.items)
    finally:
        assert await store.unsubscribe(sub.id)
        await store.delete(GetRequest(where.app_id, where.group, where.label, [k, other]))
    assert sub.closed
    assert not await store.unsubscribe(sub.id)
    assert await asyncio.wait_for(sub.next_event(), PUSH) is None


async def test_snapshot_feature(store: ConfigurationStore, row: Row) -> None:
    """SNAPSHOT: a new subscription first gets the current values; without it, only changes."""
    k = unique("k")
    where = scope(store, [k])
    await store.set(SetRequest(where.app_id, [item(where, k, "before")]))
    sub = await store.subscribe(where)
    try:
        if ConfigurationFeature.SNAPSHOT in row.features:
            first = await asyncio.wait_for(sub.next_event(), PUSH)
            assert first is not None and [(i.key, i.content) for i in first.items] == [(k, "before")]
        else:
            # A cancelled read takes nothing: changes stay queued on the subscription.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(sub.next_event(), QUIET)
        await store.set(SetRequest(where.app_id, [item(where, k, "after")]))
        await asyncio.wait_for(_until(sub, k, "after"), PUSH)
    finally:
        sub.close()
        await store.delete(GetRequest(where.app_id, where.group, where.label, [k]))


async def _until(sub: Subscription, key: str, content: str) -> ChangeEvent:
    while True:
        event = await sub.next_event()
        assert event is not None, "subscription ended"
        if any(i.key == key and i.content == content for i in event.items):
            return event
