"""The State API's behaviour, identical on every backend, through the gRPC server.

Everything goes through the raw `spec.proto.runtime.v1.Runtime` stubs, as an SDK would; the
only look behind the API is the key-prefix test, which asks the component for the stored key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable

import grpc
import pytest

from layotto.components.state.base import GetRequest, StateFeature, StateStore
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

from .backends import APP_ID, PREFIXED_STORES, STORE
from .conftest import StateEnv

FIRST_WRITE = pb.StateOptions.CONCURRENCY_FIRST_WRITE
LAST_WRITE = pb.StateOptions.CONCURRENCY_LAST_WRITE


def new_key() -> str:
    return f"conf-{uuid.uuid4().hex}"


def first_etag(env: StateEnv) -> str:
    """What a first save reads back as its etag: "1", or "" on a store without etags."""
    return "1" if StateFeature.ETAG in env.backend.features else ""


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call was expected to fail")


async def save(env: StateEnv, key: str, value: bytes, *, etag: str | None = None, **item: object) -> None:
    state = pb.StateItem(key=key, value=value, **item)  # type: ignore[arg-type]
    if etag is not None:
        state.etag.value = etag
    await env.stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[state]))


async def get(env: StateEnv, key: str, store: str = STORE) -> pb.GetStateResponse:
    reply: pb.GetStateResponse = await env.stub.GetState(pb.GetStateRequest(store_name=store, key=key))
    return reply


async def delete(env: StateEnv, key: str, etag: str | None = None) -> None:
    request = pb.DeleteStateRequest(store_name=STORE, key=key)
    if etag is not None:
        request.etag.value = etag
    await env.stub.DeleteState(request)


# ---- basic CRUD ----
async def test_missing_key_reads_empty(env: StateEnv) -> None:
    reply = await get(env, new_key())
    assert reply.data == b""
    assert reply.etag == ""


async def test_save_get_delete(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"hello \x00 world")
    reply = await get(env, key)
    assert reply.data == b"hello \x00 world"
    assert reply.etag == first_etag(env), "a first save yields etag 1"
    await delete(env, key)
    assert (await get(env, key)).data == b""
    await delete(env, key)  # deleting a missing key without an etag is not an error


@pytest.mark.needs(StateFeature.ETAG)
async def test_every_save_increments_the_etag(env: StateEnv) -> None:
    key = new_key()
    for expected in ("1", "2", "3"):
        await save(env, key, expected.encode())
        assert (await get(env, key)).etag == expected
    assert (await get(env, key)).data == b"3"


async def test_empty_value_round_trips(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"")
    reply = await get(env, key)
    assert reply.data == b""
    assert reply.etag == first_etag(env)


async def test_large_value(env: StateEnv) -> None:
    key = new_key()
    value = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB, below gRPC's 4 MiB limit
    await save(env, key, value)
    assert (await get(env, key)).data == value
    await delete(env, key)


# ---- etags ----
@pytest.mark.needs(StateFeature.ETAG)
async def test_matching_etag_saves_and_deletes(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"a")
    await save(env, key, b"b", etag="1")
    reply = await get(env, key)
    assert (reply.data, reply.etag) == (b"b", "2")
    await delete(env, key, etag="2")
    assert (await get(env, key)).etag == ""


@pytest.mark.needs(StateFeature.ETAG)
async def test_stale_etag_is_aborted_and_changes_nothing(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"a")
    await save(env, key, b"b")
    err = await rpc_error(save(env, key, b"stale", etag="1"))
    assert err.code() == grpc.StatusCode.ABORTED
    assert err.details().startswith(f"failed saving state in state store {STORE}: ")
    err = await rpc_error(delete(env, key, etag="1"))
    assert err.code() == grpc.StatusCode.ABORTED
    assert err.details().startswith(f"failed deleting state with key {key}: ")
    reply = await get(env, key)
    assert (reply.data, reply.etag) == (b"b", "2")


@pytest.mark.needs(StateFeature.ETAG)
async def test_malformed_etag_is_invalid_argument(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"a")
    err = await rpc_error(save(env, key, b"x", etag="not-a-number"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await rpc_error(delete(env, key, etag="not-a-number"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    reply = await get(env, key)
    assert (reply.data, reply.etag) == (b"a", "1")


@pytest.mark.needs(StateFeature.ETAG)
async def test_etag_zero_or_empty_means_none(env: StateEnv) -> None:
    """Layotto's JS SDK sends etag "0" when the app gave none."""
    key = new_key()
    await save(env, key, b"a")
    await save(env, key, b"b")
    await save(env, key, b"c", etag="0")
    await save(env, key, b"d", etag="")
    reply = await get(env, key)
    assert (reply.data, reply.etag) == (b"d", "4")
    await delete(env, key, etag="0")
    assert (await get(env, key)).etag == ""


async def test_last_write_ignores_the_etag(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"a")
    await save(env, key, b"b")
    await save(env, key, b"c", etag="1", options=pb.StateOptions(concurrency=LAST_WRITE))
    assert (await get(env, key)).data == b"c"


@pytest.mark.needs(StateFeature.ETAG)
async def test_first_write(env: StateEnv) -> None:
    key = new_key()
    first = pb.StateOptions(concurrency=FIRST_WRITE)
    await save(env, key, b"a", options=first)
    assert (await get(env, key)).etag == "1"
    err = await rpc_error(save(env, key, b"b", options=first))
    assert err.code() == grpc.StatusCode.ABORTED, "first-write without an etag must not overwrite"
    await save(env, key, b"c", etag="1", options=first)
    err = await rpc_error(save(env, key, b"d", etag="1", options=first))
    assert err.code() == grpc.StatusCode.ABORTED
    reply = await get(env, key)
    assert (reply.data, reply.etag) == (b"c", "2")


@pytest.mark.needs(StateFeature.ETAG)
async def test_an_etag_on_a_missing_key_is_a_mismatch(env: StateEnv) -> None:
    """One rule on every store (docs/state.md): a key that does not exist has no etag to match,
    so a save, a delete or a transaction naming one is refused (ABORTED) and changes nothing."""
    missing, gone, fresh = new_key(), new_key(), new_key()
    await save(env, gone, b"x")
    await delete(env, gone)
    for key in (missing, gone):
        err = await rpc_error(save(env, key, b"v", etag="1"))
        assert err.code() == grpc.StatusCode.ABORTED, err.details()
        assert err.details().startswith(f"failed saving state in state store {STORE}: ")
        err = await rpc_error(save(env, key, b"v", etag="1", options=pb.StateOptions(concurrency=FIRST_WRITE)))
        assert err.code() == grpc.StatusCode.ABORTED, err.details()
        err = await rpc_error(delete(env, key, etag="1"))
        assert err.code() == grpc.StatusCode.ABORTED, err.details()
        assert err.details().startswith(f"failed deleting state with key {key}: ")
        assert (await get(env, key)).etag == ""
    if StateFeature.TRANSACTIONAL in env.backend.features:
        for bad in (_op("upsert", missing, b"v", etag="1"), _op("delete", missing, etag="1")):
            err = await rpc_error(
                env.stub.ExecuteStateTransaction(
                    pb.ExecuteStateTransactionRequest(storeName=STORE, operations=[_op("upsert", fresh, b"f"), bad])
                )
            )
            # The Layotto API answers Internal for every failed transaction, as upstream.
            assert err.code() == grpc.StatusCode.INTERNAL, err.details()
            assert err.details().startswith("error while executing state transaction: ")
        assert (await get(env, fresh)).etag == "", "a refused transaction applies nothing"
    assert (await get(env, missing)).etag == ""


# ---- bulk ----
async def test_bulk_get_order_independent_with_missing_keys(env: StateEnv) -> None:
    keys = [new_key() for _ in range(3)]
    for i, key in enumerate(keys):
        await save(env, key, f"v{i}".encode())
    missing = new_key()
    asked = [keys[2], missing, keys[0], keys[1]]
    for parallelism in (0, 2):
        request = pb.GetBulkStateRequest(store_name=STORE, keys=asked, parallelism=parallelism)
        reply = await env.stub.GetBulkState(request)
        items = {item.key: item for item in reply.items}
        assert sorted(items) == sorted(asked)
        for i, key in enumerate(keys):
            assert (items[key].data, items[key].etag, items[key].error) == (f"v{i}".encode(), first_etag(env), "")
        assert (items[missing].data, items[missing].etag, items[missing].error) == (b"", "", "")


async def test_bulk_save_and_bulk_delete(env: StateEnv) -> None:
    keys = [new_key() for _ in range(5)]
    states = [pb.StateItem(key=k, value=k.encode()) for k in keys]
    await env.stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=states))
    reply = await env.stub.GetBulkState(pb.GetBulkStateRequest(store_name=STORE, keys=keys))
    assert {i.key: i.data for i in reply.items} == {k: k.encode() for k in keys}
    await env.stub.DeleteBulkState(
        pb.DeleteBulkStateRequest(store_name=STORE, states=[pb.StateItem(key=k) for k in keys[:4]])
    )
    reply = await env.stub.GetBulkState(pb.GetBulkStateRequest(store_name=STORE, keys=keys))
    assert {i.key: i.data for i in reply.items} == {**{k: b"" for k in keys[:4]}, keys[4]: keys[4].encode()}


@pytest.mark.needs(StateFeature.ETAG)
async def test_bulk_save_with_etags(env: StateEnv) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        await save(env, key, b"a")
    states = [pb.StateItem(key=k, value=b"b", etag=pb.Etag(value="1")) for k in keys]
    await env.stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=states))
    for key in keys:
        reply = await get(env, key)
        assert (reply.data, reply.etag) == (b"b", "2")


# ---- transactions ----
def _op(kind: str, key: str, value: bytes = b"", etag: str | None = None) -> pb.TransactionalStateOperation:
    item = pb.StateItem(key=key, value=value)
    if etag is not None:
        item.etag.value = etag
    return pb.TransactionalStateOperation(operationType=kind, request=item)


@pytest.mark.lacks(StateFeature.ETAG)
async def test_an_etag_is_refused_by_a_store_without_etags(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"a")
    err = await rpc_error(save(env, key, b"b", etag="1"))
    assert err.details().startswith(f"failed saving state in state store {STORE}: ")
    err = await rpc_error(delete(env, key, etag="1"))
    assert err.details().startswith(f"failed deleting state with key {key}: ")
    assert (await get(env, key)).data == b"a"


@pytest.mark.lacks(StateFeature.TRANSACTIONAL)
async def test_transaction_on_a_store_without_them_is_unimplemented(env: StateEnv) -> None:
    key = new_key()
    request = pb.ExecuteStateTransactionRequest(storeName=STORE, operations=[_op("upsert", key, b"v")])
    err = await rpc_error(env.stub.ExecuteStateTransaction(request))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.UNIMPLEMENTED,
        f"state store {STORE} doesn't support transaction",
    )
    assert (await get(env, key)).data == b""


@pytest.mark.needs(StateFeature.TRANSACTIONAL, StateFeature.ETAG)
async def test_transaction_upserts_and_deletes(env: StateEnv) -> None:
    a, b, gone = new_key(), new_key(), new_key()
    await save(env, gone, b"x")
    await save(env, b, b"old")
    await env.stub.ExecuteStateTransaction(
        pb.ExecuteStateTransactionRequest(
            storeName=STORE,
            operations=[_op("upsert", a, b"A"), _op("upsert", b, b"B", etag="1"), _op("delete", gone, etag="1")],
        )
    )
    assert (await get(env, a)).data == b"A"
    reply = await get(env, b)
    assert (reply.data, reply.etag) == (b"B", "2")
    assert (await get(env, gone)).etag == ""


@pytest.mark.needs(StateFeature.TRANSACTIONAL, StateFeature.ETAG)
@pytest.mark.parametrize("failing", ["stale-upsert", "stale-delete", "first-write"])
async def test_transaction_with_a_failing_operation_applies_nothing(env: StateEnv, failing: str) -> None:
    fresh, existing, deleted = new_key(), new_key(), new_key()
    # Written with first-write, so that every store refuses a first-write save without an etag
    # (redis, as upstream, refuses it only on keys that carry its first-write flag).
    await save(env, existing, b"keep", options=pb.StateOptions(concurrency=FIRST_WRITE))
    await save(env, existing, b"keep", etag="1")
    await save(env, deleted, b"still-here")
    bad = {
        "stale-upsert": _op("upsert", existing, b"changed", etag="1"),
        "stale-delete": _op("delete", existing, etag="1"),
        "first-write": pb.TransactionalStateOperation(
            operationType="upsert",
            request=pb.StateItem(key=existing, value=b"changed", options=pb.StateOptions(concurrency=FIRST_WRITE)),
        ),
    }[failing]
    err = await rpc_error(
        env.stub.ExecuteStateTransaction(
            pb.ExecuteStateTransactionRequest(
                storeName=STORE,
                operations=[_op("upsert", fresh, b"new"), _op("delete", deleted), bad],
            )
        )
    )
    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details().startswith("error while executing state transaction: ")
    assert (await get(env, fresh)).etag == ""
    assert (await get(env, deleted)).data == b"still-here"
    reply = await get(env, existing)
    assert (reply.data, reply.etag) == (b"keep", "2")


# ---- TTL ----
@pytest.mark.needs(StateFeature.TTL)
async def test_ttl_expires_the_key(env: StateEnv) -> None:
    short, kept = new_key(), new_key()
    await save(env, short, b"soon gone", metadata={"ttlInSeconds": "1"})
    await save(env, kept, b"stays")
    assert (await get(env, short)).data == b"soon gone"
    deadline = time.monotonic() + 5.0
    while (await get(env, short)).data:
        assert time.monotonic() < deadline, "a key saved with ttlInSeconds=1 is still there after 5 s"
        await asyncio.sleep(0.1)
    assert (await get(env, kept)).data == b"stays"


@pytest.mark.needs(StateFeature.TTL, StateFeature.TRANSACTIONAL)
async def test_ttl_in_transaction_and_non_positive_ttl(env: StateEnv) -> None:
    key, forever = new_key(), new_key()
    await env.stub.ExecuteStateTransaction(
        pb.ExecuteStateTransactionRequest(
            storeName=STORE,
            operations=[
                pb.TransactionalStateOperation(
                    operationType="upsert",
                    request=pb.StateItem(key=key, value=b"v", metadata={"ttlInSeconds": "1"}),
                )
            ],
        )
    )
    await save(env, forever, b"v", metadata={"ttlInSeconds": "1"})
    await save(env, forever, b"w", metadata={"ttlInSeconds": "-1"})  # <= 0: never expire
    deadline = time.monotonic() + 5.0
    while (await get(env, key)).data:
        assert time.monotonic() < deadline, "a transactional save with ttlInSeconds=1 did not expire"
        await asyncio.sleep(0.1)
    assert (await get(env, forever)).data == b"w"


# ---- key prefixes ----
@pytest.mark.parametrize("strategy", sorted(PREFIXED_STORES))
async def test_key_prefix_strategies(env: StateEnv, strategy: str) -> None:
    store = PREFIXED_STORES[strategy]
    key = new_key()
    stored_as = {"name": f"{store}||{key}", "appid": f"{APP_ID}||{key}", "custom-prefix": f"custom-prefix||{key}"}
    request = pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key=key, value=b"v")])
    await env.stub.SaveState(request)
    assert (await get(env, key, store)).data == b"v"
    component = env.sidecar.rt.get("state", store)
    assert isinstance(component, StateStore)
    found = await component.get(GetRequest(stored_as[strategy]))
    assert found is not None and found.data == b"v", f"expected the value under {stored_as[strategy]!r}"
    assert await component.get(GetRequest(key)) is None
    reply = await env.stub.GetBulkState(pb.GetBulkStateRequest(store_name=store, keys=[key]))
    assert [(i.key, i.data) for i in reply.items] == [(key, b"v")], "bulk replies strip the prefix"
    await env.stub.DeleteState(pb.DeleteStateRequest(store_name=store, key=key))
    assert await component.get(GetRequest(stored_as[strategy])) is None


async def test_key_prefix_none_stores_the_key_as_is(env: StateEnv) -> None:
    key = new_key()
    await save(env, key, b"v")
    component = env.sidecar.rt.get("state", STORE)
    assert isinstance(component, StateStore)
    found = await component.get(GetRequest(key))
    assert found is not None and found.data == b"v"


@pytest.mark.parametrize("store", [STORE, *PREFIXED_STORES.values()])
async def test_separator_in_key_is_rejected(env: StateEnv, store: str) -> None:
    key = f"a||{uuid.uuid4().hex}"
    message = f"input key/keyPrefix '{key}' can't contain '||'"
    calls = [
        env.stub.SaveState(pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key=key, value=b"v")])),
        env.stub.GetState(pb.GetStateRequest(store_name=store, key=key)),
        env.stub.DeleteState(pb.DeleteStateRequest(store_name=store, key=key)),
        env.stub.GetBulkState(pb.GetBulkStateRequest(store_name=store, keys=[key])),
    ]
    for call in calls:
        err = await rpc_error(call)
        assert (err.code(), err.details()) == (grpc.StatusCode.UNKNOWN, message)
