"""The State API of both gRPC APIs on the embedded stores (in-memory, SQLite, and a test store
without optional features): results, and the exact code and message of every failure as each
API gives it today. A refactor that changes a byte of an answer fails here."""

from __future__ import annotations

import grpc
import pytest

from tests.api.clients import DAPR, LAYOTTO, Api, Item, failure
from tests.api.conftest import FEATURELESS, MEMORY, SQLITE, new_key

C = grpc.StatusCode
STORES = [MEMORY, SQLITE]

#: What each store says about a failed etag check or a malformed etag (part of the API message).
STALE_SAVE = {MEMORY: "possible etag mismatch", SQLITE: "possible etag mismatch: key {key} was not saved"}
STALE_DELETE = {MEMORY: "possible etag mismatch", SQLITE: "possible etag mismatch: key {key} was not deleted"}
BAD_ETAG = {
    MEMORY: "invalid etag 'not-a-number'",
    SQLITE: "invalid etag value: 'not-a-number' is not a version number",
}


@pytest.mark.parametrize("store", STORES)
async def test_save_get_delete(api: Api, store: str) -> None:
    key = new_key()
    assert await api.get_state(store, key) == (b"", "")
    await api.save_state(store, Item(key, b"v1"))
    assert await api.get_state(store, key) == (b"v1", "1")
    await api.save_state(store, Item(key, b"v2", etag="1"))
    assert await api.get_state(store, key) == (b"v2", "2")
    await api.delete_state(store, key, etag="2")
    assert await api.get_state(store, key) == (b"", "")
    await api.delete_state(store, key)  # a missing key without an etag is no error


@pytest.mark.parametrize("store", STORES)
async def test_etag_conflicts(api: Api, store: str) -> None:
    key = new_key()
    await api.save_state(store, Item(key, b"a"))
    await api.save_state(store, Item(key, b"b"))
    stale_save = STALE_SAVE[store].format(key=key)
    assert await failure(api.save_state(store, Item(key, b"x", etag="1"))) == (
        C.ABORTED,
        f"failed saving state in state store {store}: {stale_save}",
    )
    assert await failure(api.save_state(store, Item(key, b"x", first_write=True))) == (
        C.ABORTED,
        f"failed saving state in state store {store}: "
        + ("first-write: the key exists and no etag was given" if store == MEMORY else stale_save),
    )
    assert await failure(api.delete_state(store, key, etag="1")) == (
        C.ABORTED,
        f"failed deleting state with key {key}: {STALE_DELETE[store].format(key=key)}",
    )
    assert await failure(api.save_state(store, Item(key, b"x", etag="not-a-number"))) == (
        C.INVALID_ARGUMENT,
        f"failed saving state in state store {store}: {BAD_ETAG[store]}",
    )
    assert await api.get_state(store, key) == (b"b", "2")


@pytest.mark.parametrize("store", STORES)
async def test_bulk_get_and_bulk_delete(api: Api, store: str) -> None:
    keys = [new_key() for _ in range(3)]
    await api.save_state(store, *(Item(k, k.encode()) for k in keys))
    missing = new_key()
    assert await api.bulk_get(store, [keys[2], missing, keys[0]]) == [
        (keys[2], keys[2].encode(), "1", ""),
        (missing, b"", "", ""),
        (keys[0], keys[0].encode(), "1", ""),
    ]
    await api.bulk_delete(store, Item(keys[0]), Item(keys[1], etag="1"))
    assert [data for _, data, _, _ in await api.bulk_get(store, keys)] == [b"", b"", keys[2].encode()]
    stale = STALE_DELETE[store].format(key=keys[2])
    expected = {
        LAYOTTO: (C.ABORTED, stale),
        DAPR: (C.ABORTED, f"failed deleting state in state store {store}: {stale}"),
    }
    assert await failure(api.bulk_delete(store, Item(keys[2], etag="7"))) == expected[api.name]


@pytest.mark.parametrize("store", STORES)
async def test_transaction(api: Api, store: str) -> None:
    kept, gone, fresh = new_key(), new_key(), new_key()
    await api.save_state(store, Item(kept, b"old"), Item(gone, b"x"))
    await api.transaction(
        store, ("upsert", Item(kept, b"new", etag="1")), ("delete", Item(gone)), ("upsert", Item(fresh, b"f"))
    )
    assert [await api.get_state(store, k) for k in (kept, gone, fresh)] == [(b"new", "2"), (b"", ""), (b"f", "1")]

    stale = STALE_SAVE[store].format(key=kept)
    expected = {
        LAYOTTO: (C.INTERNAL, f"error while executing state transaction: {stale}"),
        DAPR: (C.ABORTED, f"error while executing state transaction: {stale}"),
    }
    other = new_key()
    failed = api.transaction(store, ("upsert", Item(other, b"o")), ("upsert", Item(kept, b"stale", etag="1")))
    assert await failure(failed) == expected[api.name]
    assert await api.get_state(store, other) == (b"", ""), "a failed transaction applies nothing"

    bogus = api.transaction(store, ("bogus", Item(other, b"o")))
    assert await failure(bogus) == (C.UNIMPLEMENTED, "operation type bogus not supported")


async def test_transaction_on_a_store_without_transactions(api: Api) -> None:
    call = api.transaction(FEATURELESS, ("upsert", Item(new_key(), b"v")))
    assert await failure(call) == (C.UNIMPLEMENTED, f"state store {FEATURELESS} doesn't support transaction")


async def test_an_operation_the_store_does_not_support(api: Api) -> None:
    key = new_key()
    await api.save_state(FEATURELESS, Item(key, b"v"))
    assert await api.get_state(FEATURELESS, key) == (b"v", "")
    assert await failure(api.save_state(FEATURELESS, Item(key, b"w", etag="3"))) == (
        C.INTERNAL,
        f"failed saving state in state store {FEATURELESS}: etags are not supported by this store",
    )


async def test_unknown_store_and_bad_keys(api: Api) -> None:
    assert await failure(api.get_state("nope", "k")) == (C.INVALID_ARGUMENT, "state store nope is not found")
    assert await failure(api.save_state("nope", Item("k"))) == (C.INVALID_ARGUMENT, "state store nope is not found")
    separator = {LAYOTTO: C.UNKNOWN, DAPR: C.INVALID_ARGUMENT}[api.name]
    message = "input key/keyPrefix 'a||b' can't contain '||'"
    assert await failure(api.get_state(MEMORY, "a||b")) == (separator, message)
    assert await failure(api.save_state(MEMORY, Item("a||b", b"v"))) == (separator, message)
    assert await failure(api.delete_state(MEMORY, "a||b")) == (separator, message)
    if api.name == LAYOTTO:
        assert await failure(api.get_state(MEMORY, "")) == (C.INVALID_ARGUMENT, f"key is empty in state store {MEMORY}")
    else:
        assert await api.get_state(MEMORY, "") == (b"", ""), "the Dapr API lets an empty key through"


async def test_no_state_store_configured(empty: Api) -> None:
    expected = (C.FAILED_PRECONDITION, "state store is not configured")
    assert await failure(empty.get_state(MEMORY, "k")) == expected
    assert await failure(empty.save_state(MEMORY, Item("k"))) == expected
    assert await failure(empty.transaction(MEMORY, ("upsert", Item("k")))) == expected


async def test_both_apis_share_the_data(api: Api, channel: grpc.aio.Channel) -> None:
    from tests.api.clients import client

    other = client(DAPR if api.name == LAYOTTO else LAYOTTO, channel)
    key = new_key()
    await api.save_state(MEMORY, Item(key, b"shared"))
    assert await other.get_state(MEMORY, key) == (b"shared", "1")


async def test_dapr_query_is_unimplemented(channel: grpc.aio.Channel) -> None:
    from tests.api.clients import DaprApi, dstate

    dapr = DaprApi(channel)
    call = dapr.stub.QueryStateAlpha1(dstate.QueryStateRequest(store_name=MEMORY, query="{}"))
    assert await failure(call) == (C.UNIMPLEMENTED, f"state store {MEMORY} doesn't support query")
    call = dapr.stub.QueryStateAlpha1(dstate.QueryStateRequest(store_name="nope", query="{}"))
    assert await failure(call) == (C.INVALID_ARGUMENT, "state store nope is not found")
