"""Dapr's HTTP state endpoints (daprd's /v1.0/state/...) on the embedded stores: bodies, headers,
statuses and daprd's error codes and messages, and that both Dapr APIs see the same data."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest

from tests.api.clients import DaprApi, Item
from tests.api.conftest import FEATURELESS, MEMORY, SQLITE, DaprHttp

STORES = [MEMORY, SQLITE]


def new_key() -> str:
    return f"http-{uuid.uuid4().hex[:16]}"


@pytest.mark.parametrize("store", STORES)
async def test_save_get_delete_with_etags(dapr_http: DaprHttp, store: str) -> None:
    key = new_key()
    saved = await dapr_http("POST", f"/v1.0/state/{store}", json_body=[{"key": key, "value": {"b": 1, "a": "<x>"}}])
    assert (saved.status, saved.body) == (204, b"")
    got = await dapr_http("GET", f"/v1.0/state/{store}/{key}")
    assert got.status == 200
    assert got.headers["Content-Type"] == "application/json"
    # Stored as daprd's stores keep a decoded value: json.Marshal, sorted keys, HTML escaped.
    assert got.body == b'{"a":"\\u003cx\\u003e","b":1}'
    etag = got.headers["ETag"]

    stale = await dapr_http(
        "POST", f"/v1.0/state/{store}", json_body=[{"key": key, "value": "v2", "etag": str(int(etag) + 7)}]
    )
    status, code, message = stale.error
    assert (status, code) == (409, "ERR_STATE_SAVE")
    assert message.startswith(f"failed saving state in state store {store}: ")
    fresh = await dapr_http(
        "PUT",
        f"/v1.0/state/{store}",
        json_body=[{"key": key, "value": "v2", "etag": etag, "options": {"concurrency": "first-write"}}],
    )
    assert fresh.status == 204
    got = await dapr_http("GET", f"/v1.0/state/{store}/{key}")
    assert got.body == b'"v2"'
    newer = got.headers["ETag"]
    assert newer != etag

    refused = await dapr_http("DELETE", f"/v1.0/state/{store}/{key}", headers={"If-Match": etag})
    status, code, message = refused.error
    assert (status, code) == (409, "ERR_STATE_DELETE")
    assert message.startswith(f"failed deleting state with key {key}: ")
    bad = await dapr_http("DELETE", f"/v1.0/state/{store}/{key}", headers={"If-Match": "not-a-version"})
    assert bad.error[:2] == (400, "ERR_STATE_DELETE")
    deleted = await dapr_http("DELETE", f"/v1.0/state/{store}/{key}", headers={"If-Match": newer})
    assert (deleted.status, deleted.body) == (204, b"")
    missing = await dapr_http("GET", f"/v1.0/state/{store}/{key}")
    assert (missing.status, missing.body) == (204, b"")


async def test_bad_etag_on_save_is_400(dapr_http: DaprHttp) -> None:
    key = new_key()
    await dapr_http("POST", f"/v1.0/state/{MEMORY}", json_body=[{"key": key, "value": 1}])
    reply = await dapr_http("POST", f"/v1.0/state/{MEMORY}", json_body=[{"key": key, "value": 2, "etag": "x"}])
    assert reply.error[:2] == (400, "ERR_STATE_SAVE")


async def test_values_as_daprd_stores_them(dapr_http: DaprHttp) -> None:
    keys = [new_key() for _ in range(5)]
    values = ["text", 2.0, [1, "a"], None, True]
    items = [{"key": k, "value": v} for k, v in zip(keys, values, strict=True)]
    items.append({"key": (no_value := new_key())})
    assert (await dapr_http("POST", f"/v1.0/state/{MEMORY}/", json_body=items)).status == 204
    stored = [(await dapr_http("GET", f"/v1.0/state/{MEMORY}/{k}")).body for k in [*keys, no_value]]
    assert stored == [b'"text"', b"2", b'[1,"a"]', b"null", b"true", b"null"]


async def test_metadata_query_parameters(dapr_http: DaprHttp) -> None:
    key = new_key()
    saved = await dapr_http(
        "POST",
        f"/v1.0/state/{MEMORY}",
        json_body=[{"key": key, "value": "short-lived", "metadata": {"ttlInSeconds": "bogus"}}],
        params=[("metadata.ttlInSeconds", "3600")],
    )
    # The query's metadata overrides the item's (else the bogus TTL would be refused).
    assert saved.status == 204
    got = await dapr_http("GET", f"/v1.0/state/{MEMORY}/{key}", params=[("consistency", "strong")])
    assert (got.status, got.body) == (200, b'"short-lived"')
    refused = await dapr_http(
        "POST", f"/v1.0/state/{MEMORY}", json_body=[{"key": key, "value": 1}], params=[("metadata.ttlInSeconds", "x")]
    )
    assert refused.error[:2] == (400, "ERR_STATE_SAVE")


async def test_bulk_get(dapr_http: DaprHttp) -> None:
    first, second, missing = new_key(), new_key(), new_key()
    await dapr_http("POST", f"/v1.0/state/{SQLITE}", json_body=[{"key": first, "value": {"n": 1}}])
    await dapr_http("POST", f"/v1.0/state/{SQLITE}", json_body=[{"key": second, "value": "two"}])
    reply = await dapr_http(
        "POST", f"/v1.0/state/{SQLITE}/bulk", json_body={"keys": [first, missing, second], "parallelism": 2}
    )
    assert reply.status == 200
    items = reply.json()
    assert [item["key"] for item in items] == [first, missing, second]
    assert items[0]["data"] == {"n": 1} and items[0]["etag"]
    assert items[1] == {"key": missing}
    assert items[2]["data"] == "two"
    empty = await dapr_http("PUT", f"/v1.0/state/{SQLITE}/bulk", json_body={})
    assert (empty.status, empty.json()) == (200, [])


async def test_transaction(dapr_http: DaprHttp) -> None:
    kept, dropped = new_key(), new_key()
    await dapr_http("POST", f"/v1.0/state/{MEMORY}", json_body=[{"key": dropped, "value": "old"}])
    reply = await dapr_http(
        "POST",
        f"/v1.0/state/{MEMORY}/transaction",
        json_body={
            "operations": [
                {"operation": "upsert", "request": {"key": kept, "value": {"ok": True}}},
                {"operation": "delete", "request": {"key": dropped}},
            ],
            "metadata": {"partitionKey": "p"},
        },
    )
    assert (reply.status, reply.body) == (204, b"")
    assert (await dapr_http("GET", f"/v1.0/state/{MEMORY}/{kept}")).json() == {"ok": True}
    assert (await dapr_http("GET", f"/v1.0/state/{MEMORY}/{dropped}")).status == 204
    nothing = await dapr_http("POST", f"/v1.0/state/{MEMORY}/transaction", json_body={"operations": []})
    assert nothing.status == 204

    stale = await dapr_http(
        "POST",
        f"/v1.0/state/{MEMORY}/transaction",
        json_body={"operations": [{"operation": "upsert", "request": {"key": kept, "value": 1, "etag": "999"}}]},
    )
    status, code, message = stale.error
    assert (status, code) == (500, "ERR_STATE_TRANSACTION")
    assert message.startswith("error while executing state transaction: ")


async def test_transaction_refusals(dapr_http: DaprHttp) -> None:
    def ops(*operations: dict[str, object]) -> dict[str, object]:
        return {"operations": list(operations)}

    cases = [
        (
            MEMORY,
            ops({"operation": "merge", "request": {"key": "a||b"}}),
            (400, "ERR_NOT_SUPPORTED_STATE_OPERATION", "operation type merge not supported"),
        ),
        (
            MEMORY,
            ops({"operation": "upsert", "request": {"key": "a||b"}}),
            (400, "ERR_MALFORMED_REQUEST", "input key/keyPrefix 'a||b' can't contain '||'"),
        ),
        (
            FEATURELESS,
            ops({"operation": "upsert", "request": {"key": "k"}}),
            (500, "ERR_STATE_STORE_NOT_SUPPORTED", f"state store {FEATURELESS} doesn't support transactions"),
        ),
    ]
    for store, body, expected in cases:
        reply = await dapr_http("POST", f"/v1.0/state/{store}/transaction", json_body=body)
        assert reply.error == expected, body
    # daprd asks whether the store runs transactions before it reads the body.
    unread = await dapr_http("POST", f"/v1.0/state/{FEATURELESS}/transaction", data="{")
    assert unread.error[:2] == (500, "ERR_STATE_STORE_NOT_SUPPORTED")


async def test_save_refusals(dapr_http: DaprHttp) -> None:
    cases = [
        ([{"key": ""}], (400, "ERR_MALFORMED_REQUEST", '"key" is a required field')),
        ([{"key": "a||b"}], (400, "ERR_MALFORMED_REQUEST", "input key/keyPrefix 'a||b' can't contain '||'")),
        (
            {"key": "k"},
            (
                400,
                "ERR_MALFORMED_REQUEST",
                "json: cannot unmarshal object into Go value of type []state.SetRequest",
            ),
        ),
        (
            [{"key": "k", "metadata": {"n": 1}}],
            (
                400,
                "ERR_MALFORMED_REQUEST",
                "json: cannot unmarshal number into Go struct field state.SetRequest.metadata of type string",
            ),
        ),
    ]
    for body, expected in cases:
        reply = await dapr_http("POST", f"/v1.0/state/{MEMORY}", json_body=body)
        assert reply.error == expected, body
    assert (await dapr_http("POST", f"/v1.0/state/{MEMORY}", json_body=[])).status == 204


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1.0/state/{store}"),
        ("PUT", "/v1.0/state/{store}/"),
        ("POST", "/v1.0/state/{store}/bulk"),
        ("POST", "/v1.0/state/{store}/transaction"),
    ],
)
async def test_bad_json_is_400(dapr_http: DaprHttp, method: str, path: str) -> None:
    reply = await dapr_http(method, path.format(store=MEMORY), data="{{")
    status, code, message = reply.error
    assert (status, code) == (400, "ERR_MALFORMED_REQUEST")
    if not path.endswith("{store}") and not path.endswith("/"):
        assert message.startswith("failed deserializing HTTP body: ")
    empty = await dapr_http(method, path.format(store=MEMORY))
    assert empty.error[:2] == (400, "ERR_MALFORMED_REQUEST")
    assert empty.error[2].endswith("EOF")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1.0/state/{store}/k"),
        ("DELETE", "/v1.0/state/{store}/k"),
        ("POST", "/v1.0/state/{store}"),
        ("PUT", "/v1.0/state/{store}/"),
        ("POST", "/v1.0/state/{store}/bulk"),
        ("PUT", "/v1.0/state/{store}/transaction"),
        ("POST", "/v1.0-alpha1/state/{store}/query"),
    ],
)
async def test_unknown_and_unconfigured_stores(
    dapr_http: DaprHttp, dapr_http_empty: DaprHttp, method: str, path: str
) -> None:
    unknown = await dapr_http(method, path.format(store="nope"), data="[]")
    assert unknown.error == (400, "ERR_STATE_STORE_NOT_FOUND", "state store nope is not found")
    none = await dapr_http_empty(method, path.format(store="nope"), data="[]")
    assert none.error == (500, "ERR_STATE_STORE_NOT_CONFIGURED", "state store nope is not configured")


async def test_query_is_refused_by_stores_without_it(dapr_http: DaprHttp) -> None:
    reply = await dapr_http("POST", f"/v1.0-alpha1/state/{MEMORY}/query", json_body={"filter": {}})
    assert reply.error == (500, "ERR_STATE_STORE_NOT_SUPPORTED", "state store does not support querying")


async def test_both_dapr_apis_share_the_data(dapr_http: DaprHttp) -> None:
    key = new_key()
    await dapr_http("POST", f"/v1.0/state/{MEMORY}", json_body=[{"key": key, "value": {"from": "http"}}])
    async with grpc.aio.insecure_channel(dapr_http.grpc_address) as channel:
        dapr = DaprApi(channel)
        data, etag = await dapr.get_state(MEMORY, key)
        assert json.loads(data) == {"from": "http"}
        got = await dapr_http("GET", f"/v1.0/state/{MEMORY}/{key}")
        assert got.headers["ETag"] == etag
        # Bytes saved through gRPC come back as they are; in a bulk reply, as text.
        await dapr.save_state(MEMORY, Item(key, b"raw bytes"))
    assert (await dapr_http("GET", f"/v1.0/state/{MEMORY}/{key}")).body == b"raw bytes"
    bulk = await dapr_http("POST", f"/v1.0/state/{MEMORY}/bulk", json_body={"keys": [key]})
    assert bulk.json()[0]["data"] == "raw bytes"


async def test_json_nested_past_the_limit_is_400_not_a_crash(dapr_http: DaprHttp) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for method, path in (("POST", f"/v1.0/state/{MEMORY}"), ("POST", f"/v1.0/state/{MEMORY}/bulk")):
        reply = await dapr_http(method, path, data=deep)
        status, code, message = reply.error
        assert (status, code) == (400, "ERR_MALFORMED_REQUEST"), message
        assert "nested deeper than 128 levels" in message
