"""State inputs the core refuses before any store sees them (found by fuzzing), through both
gRPC APIs on every backend: a TTL that is no ASCII integer or more than the store keeps, an etag
that is not ASCII digits or past a 64-bit version, an etag on a key that does not exist, and a
state query nested too deep. Each refusal has its code, names the field (and the limit), and
leaves the stored state as it was: a call that fails changes nothing."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis.exceptions import ResponseError

from layotto.components.state.base import QueryRequest, QueryResponse, StateFeature
from layotto.components.state.memory import InMemoryStateStore
from layotto.components.state.redis import SET_SCRIPT, RedisStateStore
from layotto.runtime.registry import ComponentRegistry
from layotto.sidecar import Sidecar
from tests.api.clients import DAPR, LAYOTTO, Api, DaprApi, Item, client, dstate, failure
from tests.api.conftest import MEMORY, SQLITE, DaprHttp
from tests.contract.state.backends import ROWS, TABLE
from tests.support.sidecar import running_sidecar

C = grpc.StatusCode
#: The rows with a server of their own or an embedded store (the sentinel row is the redis
#: store again, behind processes started on demand).
BACKENDS = {row.id: row for row in ROWS if row.id in ("in-memory", "sqlite", "redis", "postgresql", "mysql")}
OWN_TABLE = f"{TABLE}_bad_input"
QUERY_STORE = "query"
QUERY_TYPE = "test-query-state"
HUGE = "99999999999999999999"
MAX_TTL = 2**31 - 1
MAX_VERSION = 2**63 - 1
#: What int() reads as 1, and no store hands out: Arabic-Indic and fullwidth digits, a sign,
#: spaces, an underscore.
NOT_ASCII_ONE = ["\u0661", "\uff11", "+1", " 1", "1 ", "0_1"]


class QueryStore(InMemoryStateStore):
    """The in-memory store, with a query that finds nothing: no built-in store has one, and the
    core parses the query before any store does."""

    features = InMemoryStateStore.features | {StateFeature.QUERY}

    async def query(self, request: QueryRequest) -> QueryResponse:
        return QueryResponse([])


def _config(scratch: Path) -> dict[str, Any]:
    stores: dict[str, Any] = {}
    for name, row in BACKENDS.items():
        metadata = row.meta()
        if "tableName" in metadata:
            metadata["tableName"] = OWN_TABLE
        if "databasePath" in metadata:
            metadata["databasePath"] = str(scratch / "state.db")
        stores[name] = {"type": row.type, "metadata": metadata}
    stores[QUERY_STORE] = {"type": QUERY_TYPE, "metadata": {}}
    return {"app": {"app_id": "bad-input-app"}, "state": stores}


@pytest.fixture(scope="module")
async def sidecar() -> AsyncIterator[tuple[Sidecar, str]]:
    for row in BACKENDS.values():
        row.require()
    registry = ComponentRegistry({("state", QUERY_TYPE): QueryStore})
    with tempfile.TemporaryDirectory(prefix="layotto-bad-input-") as scratch:
        try:
            async with running_sidecar(_config(Path(scratch)), registry) as running:
                yield running
        finally:
            for row in BACKENDS.values():
                if row.cleanup is not None:
                    await row.cleanup(OWN_TABLE)


@pytest.fixture(scope="module")
async def channel(sidecar: tuple[Sidecar, str]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(sidecar[1]) as opened:
        yield opened


@pytest.fixture(params=[LAYOTTO, DAPR])
def api(request: pytest.FixtureRequest, channel: grpc.aio.Channel) -> Api:
    return client(request.param, channel)


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


def new_key() -> str:
    return f"bad-{uuid.uuid4().hex[:16]}"


async def _existing(api: Api, store: str) -> str:
    """A key saved once: value b"old", etag "1"."""
    key = new_key()
    await api.save_state(store, Item(key, b"old"))
    assert await api.get_state(store, key) == (b"old", "1")
    return key


# ---- ttlInSeconds ----


async def test_a_huge_ttl_is_refused_and_changes_nothing(api: Api, store: str) -> None:
    kept, missing = await _existing(api, store), new_key()
    for key in (kept, missing):
        code, message = await failure(api.save_state(store, Item(key, b"new", metadata={"ttlInSeconds": HUGE})))
        assert code == C.INVALID_ARGUMENT, message
        assert message.startswith(f"ttlInSeconds {HUGE} is out of range (at most "), message
    # Redis used to write the value, then fail on EXPIRE.
    assert await api.get_state(store, kept) == (b"old", "1")
    assert await api.get_state(store, missing) == (b"", "")


async def test_the_ttl_limit_is_named_and_kept(api: Api, store: str) -> None:
    key = await _existing(api, store)
    over = {"ttlInSeconds": str(MAX_TTL + 1)}
    code, message = await failure(api.save_state(store, Item(key, b"new", metadata=over)))
    assert code == C.INVALID_ARGUMENT
    assert message.startswith(f"ttlInSeconds {MAX_TTL + 1} is out of range (at most "), message
    assert message.removeprefix(f"ttlInSeconds {MAX_TTL + 1} is out of range (at most ").rstrip(")").isdigit()
    if store != "mysql":
        # MySQL's TIMESTAMP ends in 2038: its limit is the seconds left until then (less a day).
        await api.save_state(store, Item(key, b"longest", metadata={"ttlInSeconds": str(MAX_TTL)}))
        assert await api.get_state(store, key) == (b"longest", "2")
    else:
        # Past 2038: what a TIMESTAMP column cannot hold (the server refused it: INTERNAL).
        code, message = await failure(api.save_state(store, Item(key, b"new", metadata={"ttlInSeconds": "500000000"})))
        assert code == C.INVALID_ARGUMENT and message.startswith("ttlInSeconds 500000000 is out of range"), message
        assert await api.get_state(store, key) == (b"old", "1")


@pytest.mark.parametrize("ttl", ["\u0661\u0660", "10s", "1e3", " 10"])
async def test_a_ttl_that_is_no_ascii_integer_is_refused(api: Api, store: str, ttl: str) -> None:
    key = await _existing(api, store)
    assert await failure(api.save_state(store, Item(key, b"new", metadata={"ttlInSeconds": ttl}))) == (
        C.INVALID_ARGUMENT,
        f"ttlInSeconds must be an integer: {ttl!r}",
    )
    assert await api.get_state(store, key) == (b"old", "1")


async def test_a_bad_ttl_in_a_bulk_save_or_a_transaction_applies_nothing(api: Api, store: str) -> None:
    kept, fresh = await _existing(api, store), new_key()
    bad = Item(kept, b"new", metadata={"ttlInSeconds": HUGE})
    bulk = api.save_state(store, Item(fresh, b"fresh"), bad)
    code, message = await failure(bulk)
    assert code == C.INVALID_ARGUMENT and message.startswith(f"ttlInSeconds {HUGE} is out of range"), message
    transaction = api.transaction(store, ("upsert", Item(fresh, b"fresh")), ("upsert", bad))
    code, message = await failure(transaction)
    assert code == C.INVALID_ARGUMENT and message.startswith(f"ttlInSeconds {HUGE} is out of range"), message
    assert await api.get_state(store, fresh) == (b"", "")
    assert await api.get_state(store, kept) == (b"old", "1")


async def test_redis_checks_the_ttl_before_it_writes(sidecar: tuple[Sidecar, str]) -> None:
    """Behind the core's bound: the save script fails before its first write (a script that
    fails part way keeps what it wrote)."""
    component = sidecar[0].rt.get("state", "redis")
    assert isinstance(component, RedisStateStore)
    key = new_key()
    for ttl in (HUGE, "1.5", "soon"):
        with pytest.raises(ResponseError, match="invalid ttlInSeconds"):
            await component._fast.execute(b"EVAL", SET_SCRIPT, 1, key, "0", b"v", "1", ttl)
    assert await component.client.exists(key) == 0


# ---- etags ----


def _invalid_etag(store: str, etag: str) -> str:
    """The store's text for an etag that is not a version number."""
    return f"invalid etag {etag!r}" if store == "in-memory" else f"invalid etag value: {etag!r} is not a version number"


@pytest.mark.parametrize("etag", NOT_ASCII_ONE)
async def test_an_etag_that_is_not_ascii_digits_is_invalid(api: Api, store: str, etag: str) -> None:
    key = await _existing(api, store)
    assert await failure(api.save_state(store, Item(key, b"new", etag=etag))) == (
        C.INVALID_ARGUMENT,
        f"failed saving state in state store {store}: {_invalid_etag(store, etag)}",
    )
    assert await failure(api.delete_state(store, key, etag=etag)) == (
        C.INVALID_ARGUMENT,
        f"failed deleting state with key {key}: {_invalid_etag(store, etag)}",
    )
    assert await api.get_state(store, key) == (b"old", "1")


async def test_an_etag_past_the_version_range_is_invalid(api: Api, store: str) -> None:
    key = await _existing(api, store)
    reason = f"invalid etag value: {HUGE} is out of range (at most {MAX_VERSION})"
    assert await failure(api.save_state(store, Item(key, b"new", etag=HUGE))) == (
        C.INVALID_ARGUMENT,
        f"failed saving state in state store {store}: {reason}",
    )
    assert await failure(api.delete_state(store, key, etag=HUGE)) == (
        C.INVALID_ARGUMENT,
        f"failed deleting state with key {key}: {reason}",
    )
    # Layotto's ExecuteStateTransaction answers Internal for every failure, as upstream.
    code = {LAYOTTO: C.INTERNAL, DAPR: C.INVALID_ARGUMENT}[api.name]
    fresh = new_key()
    call = api.transaction(store, ("upsert", Item(fresh, b"f")), ("delete", Item(key, etag=HUGE)))
    assert await failure(call) == (code, f"error while executing state transaction: {reason}")
    assert await api.get_state(store, key) == (b"old", "1")
    assert await api.get_state(store, fresh) == (b"", "")
    # The largest version is a well-formed etag: it just matches nothing.
    code, _ = await failure(api.save_state(store, Item(key, b"new", etag=str(MAX_VERSION))))
    assert code == C.ABORTED


async def test_an_etag_on_a_missing_key_is_a_mismatch(api: Api, store: str) -> None:
    """One rule on every store (redis let it through): nothing exists for the etag to match."""
    missing, fresh = new_key(), new_key()
    code, message = await failure(api.save_state(store, Item(missing, b"v", etag="1")))
    assert (code, message.split(": ")[0]) == (C.ABORTED, f"failed saving state in state store {store}"), message
    assert "etag mismatch" in message
    code, message = await failure(api.delete_state(store, missing, etag="1"))
    assert (code, message.split(": ")[0]) == (C.ABORTED, f"failed deleting state with key {missing}"), message
    transaction_code = {LAYOTTO: C.INTERNAL, DAPR: C.ABORTED}[api.name]
    call = api.transaction(store, ("upsert", Item(fresh, b"f")), ("upsert", Item(missing, b"v", etag="1")))
    code, message = await failure(call)
    assert code == transaction_code and message.startswith("error while executing state transaction: "), message
    assert await api.get_state(store, missing) == (b"", "")
    assert await api.get_state(store, fresh) == (b"", ""), "a refused transaction applies nothing"
    # A key that existed and was deleted is missing too.
    key = await _existing(api, store)
    await api.delete_state(store, key)
    code, _ = await failure(api.save_state(store, Item(key, b"again", etag="1")))
    assert code == C.ABORTED
    assert await api.get_state(store, key) == (b"", "")


# ---- state query ----


async def test_a_query_nested_too_deep_is_refused(channel: grpc.aio.Channel) -> None:
    stub = DaprApi(channel).stub
    deep = '{"filter": ' + '{"AND": [' * 200 + "{}" + "]}" * 200 + "}"
    code, message = await failure(stub.QueryStateAlpha1(dstate.QueryStateRequest(store_name=QUERY_STORE, query=deep)))
    # daprd answers Internal for a query body it cannot parse; the limit is named.
    assert (code, message) == (
        C.INTERNAL,
        f"failed query in state store {QUERY_STORE}: the JSON is nested deeper than 128 levels",
    )
    fine = '{"filter": ' + '{"AND": [' * 20 + "{}" + "]}" * 20 + "}"
    reply = await stub.QueryStateAlpha1(dstate.QueryStateRequest(store_name=QUERY_STORE, query=fine))
    assert list(reply.results) == []


@pytest.mark.parametrize("http_store", [MEMORY, SQLITE])
async def test_dapr_http_answers_them_as_daprd_codes_them(dapr_http: DaprHttp, http_store: str) -> None:
    path = f"/v1.0/state/{http_store}"
    key, missing = new_key(), new_key()
    assert (await dapr_http("POST", path, json_body=[{"key": key, "value": "old"}])).status == 204
    huge = await dapr_http("POST", path, json_body=[{"key": key, "value": "new", "metadata": {"ttlInSeconds": HUGE}}])
    assert huge.error == (400, "ERR_STATE_SAVE", f"ttlInSeconds {HUGE} is out of range (at most {MAX_TTL})")
    bad_etag = await dapr_http("POST", path, json_body=[{"key": key, "value": "new", "etag": "\u0661"}])
    assert bad_etag.error[:2] == (400, "ERR_STATE_SAVE") and "invalid etag" in bad_etag.error[2]
    on_missing = await dapr_http("POST", path, json_body=[{"key": missing, "value": "v", "etag": "1"}])
    assert on_missing.error[:2] == (409, "ERR_STATE_SAVE"), on_missing.error
    deleted = await dapr_http("DELETE", f"{path}/{missing}", headers={"If-Match": "1"})
    assert deleted.error[:2] == (409, "ERR_STATE_DELETE"), deleted.error
    # daprd answers 500 for every failed transaction.
    ops = [{"operation": "upsert", "request": {"key": missing, "value": "v", "etag": HUGE}}]
    transaction = await dapr_http("POST", f"{path}/transaction", json_body={"operations": ops})
    assert transaction.error == (
        500,
        "ERR_STATE_TRANSACTION",
        f"error while executing state transaction: invalid etag value: {HUGE} is out of range (at most {MAX_VERSION})",
    )
    got = await dapr_http("GET", f"{path}/{key}")
    assert (got.status, got.body, got.headers["ETag"]) == (200, b'"old"', "1")
    assert (await dapr_http("GET", f"{path}/{missing}")).status == 204


def test_every_backend_is_under_test() -> None:
    # A renamed row would drop out of BACKENDS, and its cases with it, without failing.
    assert set(BACKENDS) == {"in-memory", "sqlite", "redis", "postgresql", "mysql"}
