"""Every state store through its block interface (no gRPC): the required operations, and that
the features a row declares are the store's and work, while any other feature's operation is
refused with UnsupportedError (never half-done or ignored)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from layotto.components.state.base import (
    DeleteRequest,
    GetRequest,
    QueryRequest,
    SetRequest,
    StateFeature,
    StateStore,
)
from layotto.errors import ComponentError, ETagMismatchError, UnsupportedError
from tests.contract.state.backends import INTERFACE_TABLE, ROWS, Row, interface_storage
from tests.support.rows import params


@pytest.fixture(scope="module", params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture(scope="module")
async def store(row: Row) -> AsyncIterator[StateStore]:
    component = await row.create(**interface_storage(row))
    assert isinstance(component, StateStore)
    try:
        yield component
    finally:
        await component.close()
        if row.cleanup is not None and "tableName" in interface_storage(row):
            await row.cleanup(INTERFACE_TABLE)


def new_key() -> str:
    return f"ifc-{uuid.uuid4().hex}"


async def test_declares_exactly_the_rows_features(store: StateStore, row: Row) -> None:
    assert store.features == row.features
    assert all(isinstance(f, StateFeature) for f in store.features)


async def test_get_set_delete(store: StateStore) -> None:
    key = new_key()
    assert await store.get(GetRequest(key)) is None
    await store.set(SetRequest(key, b"v\x00"))
    found = await store.get(GetRequest(key))
    assert found is not None and found.data == b"v\x00"
    await store.delete(DeleteRequest(key))
    assert await store.get(GetRequest(key)) is None
    await store.delete(DeleteRequest(key))  # a missing key without an etag is no error


async def test_bulk_operations(store: StateStore) -> None:
    keys = [new_key() for _ in range(4)]
    await store.bulk_set([SetRequest(k, k.encode()) for k in keys])
    missing = new_key()
    items = await store.bulk_get([GetRequest(k) for k in [*keys, missing]])
    assert [(i.key, i.response.data if i.response else None, i.error) for i in items] == [
        *((k, k.encode(), "") for k in keys),
        (missing, None, ""),
    ]
    await store.bulk_delete([DeleteRequest(k) for k in keys[:3]])
    left = await store.bulk_get([GetRequest(k) for k in keys])
    assert [i.response is not None for i in left] == [False, False, False, True]


# ---- features: declared ones work, the others are refused ----


async def test_etag_feature(store: StateStore, row: Row) -> None:
    key = new_key()
    if StateFeature.ETAG not in row.features:
        with pytest.raises(UnsupportedError):
            await store.set(SetRequest(key, b"x", etag="1"))
        return
    await store.set(SetRequest(key, b"a"))
    first = await store.get(GetRequest(key))
    assert first is not None and first.etag
    await store.set(SetRequest(key, b"b", etag=first.etag))
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest(key, b"stale", etag=first.etag))
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest(key, etag=first.etag))
    now = await store.get(GetRequest(key))
    assert now is not None and now.data == b"b" and now.etag != first.etag


@pytest.mark.needs(StateFeature.ETAG)
async def test_etag_on_a_missing_key_is_a_mismatch(store: StateStore, row: Row) -> None:
    """The one etag rule of every store: a key that does not exist has no etag to match."""
    missing, fresh = new_key(), new_key()
    with pytest.raises(ETagMismatchError):
        await store.set(SetRequest(missing, b"v", etag="1"))
    with pytest.raises(ETagMismatchError):
        await store.delete(DeleteRequest(missing, etag="1"))
    if StateFeature.TRANSACTIONAL in row.features:
        with pytest.raises(ETagMismatchError):
            await store.multi([SetRequest(fresh, b"f"), SetRequest(missing, b"v", etag="1")], {})
        with pytest.raises(ETagMismatchError):
            await store.multi([SetRequest(fresh, b"f"), DeleteRequest(missing, etag="1")], {})
    assert await store.get(GetRequest(missing)) is None
    assert await store.get(GetRequest(fresh)) is None


async def test_transactional_feature(store: StateStore, row: Row) -> None:
    kept, gone, fresh = new_key(), new_key(), new_key()
    if StateFeature.TRANSACTIONAL not in row.features:
        with pytest.raises(UnsupportedError) as refused:
            await store.multi([SetRequest(fresh, b"x")], {})
        assert refused.value.feature == StateFeature.TRANSACTIONAL
        assert await store.get(GetRequest(fresh)) is None
        return
    await store.set(SetRequest(kept, b"keep"))
    await store.set(SetRequest(gone, b"x"))
    current = await store.get(GetRequest(kept))
    assert current is not None and current.etag
    # A failing operation: nothing of the batch is applied.
    with pytest.raises(ComponentError):
        await store.multi(
            [SetRequest(fresh, b"new"), DeleteRequest(gone), SetRequest(kept, b"changed", etag=current.etag + "0")],
            {},
        )
    assert await store.get(GetRequest(fresh)) is None
    assert await store.get(GetRequest(gone)) is not None
    # A good one: everything is.
    await store.multi([SetRequest(fresh, b"new"), DeleteRequest(gone), SetRequest(kept, b"changed")], {})
    assert [await store.get(GetRequest(k)) is not None for k in (fresh, gone, kept)] == [True, False, True]


async def test_ttl_feature(store: StateStore, row: Row) -> None:
    key, kept = new_key(), new_key()
    if StateFeature.TTL not in row.features:
        with pytest.raises(UnsupportedError):
            await store.set(SetRequest(key, b"x", metadata={"ttlInSeconds": "1"}))
        return
    await store.set(SetRequest(key, b"soon gone", metadata={"ttlInSeconds": "1"}))
    await store.set(SetRequest(kept, b"stays", metadata={"ttlInSeconds": "-1"}))
    deadline = time.monotonic() + 5.0
    while await store.get(GetRequest(key)) is not None:
        assert time.monotonic() < deadline, "a key saved with ttlInSeconds=1 is still there after 5 s"
        await asyncio.sleep(0.1)
    assert await store.get(GetRequest(kept)) is not None


async def test_query_feature(store: StateStore, row: Row) -> None:
    request = QueryRequest({"filter": {"EQ": {"value": "x"}}})
    if StateFeature.QUERY not in row.features:
        with pytest.raises(UnsupportedError) as refused:
            await store.query(request)
        assert refused.value.feature == StateFeature.QUERY
        return
    key = new_key()
    await store.set(SetRequest(key, b'{"value": "x"}'))
    assert key in {item.key for item in (await store.query(request)).results}
