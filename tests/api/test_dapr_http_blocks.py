"""Dapr's HTTP endpoints of the other blocks on the embedded backends: output bindings (a local
HTTP server), secrets (a local JSON file), configuration (in-memory, items saved through the
Layotto API) and locks (in-memory), with daprd's statuses, error codes and messages."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as lpb
from tests.api.clients import DaprApi, LayottoApi
from tests.api.conftest import CONFIG, KV, LOCK, SECRETS, WEB, AppServer, DaprHttp, dapr_http_sidecar

WITHIN = 5.0
HTTP_OPERATIONS = "create get head post put patch delete options trace"


# ---- bindings ----


async def test_binding_round_trip(dapr_http: DaprHttp) -> None:
    key = uuid.uuid4().hex
    created = await dapr_http(
        "POST",
        f"/v1.0/bindings/{KV}",
        json_body={"data": {"b": 1, "a": "text"}, "metadata": {"path": key}, "operation": "create"},
    )
    assert (created.status, created.headers["metadata.statusCode"]) == (200, "201")
    # The binding got json.Marshal of the decoded data, as daprd sends it.
    read = await dapr_http("PUT", f"/v1.0/bindings/{KV}", json_body={"metadata": {"path": key}, "operation": "get"})
    assert (read.status, read.body) == (200, b'{"a":"text","b":1}')
    await dapr_http(
        "POST", f"/v1.0/bindings/{KV}", json_body={"data": "hi", "metadata": {"path": key}, "operation": "create"}
    )
    quoted = await dapr_http("POST", f"/v1.0/bindings/{KV}", json_body={"metadata": {"path": key}, "operation": "get"})
    assert quoted.body == b'"hi"'


async def test_binding_metadata_goes_to_the_binding(dapr_http: DaprHttp) -> None:
    # The http binding sends capitalised metadata keys as request headers.
    echoed = await dapr_http(
        "POST", f"/v1.0/bindings/{WEB}", json_body={"operation": "post", "data": [1], "metadata": {"X-Mine": "v"}}
    )
    doc = json.loads(echoed.body)
    assert (doc["method"], doc["headers"]["X-Mine"], doc["body"]) == ("POST", "v", "[1]")


async def test_binding_refusals(dapr_http: DaprHttp) -> None:
    prefix = "error invoking output binding"
    cases = [
        # daprd checks the operation before it looks the binding up.
        ("nope", {"data": 1}, f"{prefix} nope: operation field is missing from request"),
        ("nope", {"operation": "get"}, f"{prefix} nope: couldn't find output binding nope"),
        (
            KV,
            {"operation": "fly"},
            f"{prefix} {KV}: binding {KV} does not support operation fly. supported operations:{HTTP_OPERATIONS}",
        ),
        (WEB, {"operation": "get", "metadata": {"path": "status/500"}}, f"{prefix} {WEB}: received status code 500"),
    ]
    for name, body, message in cases:
        reply = await dapr_http("POST", f"/v1.0/bindings/{name}", json_body=body)
        assert reply.error == (500, "ERR_INVOKE_OUTPUT_BINDING", message), body
    for bad in ('"a string"', "{", ""):
        status, code, message = (await dapr_http("POST", f"/v1.0/bindings/{KV}", data=bad)).error
        assert (status, code) == (400, "ERR_MALFORMED_REQUEST")
        assert message.startswith("failed deserializing HTTP body: ")


# ---- secrets ----


async def test_secrets(dapr_http: DaprHttp) -> None:
    one = await dapr_http("GET", f"/v1.0/secrets/{SECRETS}/db")
    assert (one.status, one.json()) == (200, {"db": "pw"})
    nested = await dapr_http("GET", f"/v1.0/secrets/{SECRETS}/nested:a", params=[("metadata.version", "1")])
    assert nested.json() == {"nested:a": "x"}
    bulk = await dapr_http("GET", f"/v1.0/secrets/{SECRETS}/bulk")
    assert bulk.json() == {"db": {"db": "pw"}, "nested:a": {"nested:a": "x"}}


async def test_secret_refusals(dapr_http: DaprHttp, dapr_http_empty: DaprHttp) -> None:
    missing = await dapr_http("GET", f"/v1.0/secrets/{SECRETS}/nope")
    status, code, message = missing.error
    assert (status, code) == (500, "ERR_SECRET_GET")
    assert message.startswith(f"failed getting secret with key nope from secret store {SECRETS}: ")
    for path in ("/v1.0/secrets/nope/k", "/v1.0/secrets/nope/bulk"):
        unknown = await dapr_http("GET", path)
        assert unknown.error == (401, "ERR_SECRET_STORE_NOT_FOUND", "failed finding secret store with key nope")
        none = await dapr_http_empty("GET", path)
        assert none.error == (500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")


# ---- configuration ----


def new_key() -> str:
    return f"cfg-{uuid.uuid4().hex[:12]}"


async def save(dapr_http: DaprHttp, **items: str) -> None:
    async with grpc.aio.insecure_channel(dapr_http.grpc_address) as channel:
        entries = [lpb.ConfigurationItem(key=k, content=v) for k, v in items.items()]
        await LayottoApi(channel).stub.SaveConfiguration(lpb.SaveConfigurationRequest(store_name=CONFIG, items=entries))


@pytest.mark.parametrize("version", ["v1.0", "v1.0-alpha1"])
async def test_get_configuration(dapr_http: DaprHttp, version: str) -> None:
    first, second = new_key(), new_key()
    await save(dapr_http, **{first: "1", second: "2"})
    reply = await dapr_http("GET", f"/{version}/configuration/{CONFIG}", params=[("key", first), ("key", second)])
    assert (reply.status, reply.json()) == (200, {first: {"value": "1"}, second: {"value": "2"}})
    none = await dapr_http("GET", f"/{version}/configuration/{CONFIG}", params=[("key", new_key())])
    assert (none.status, none.body) == (204, b"")


async def test_configuration_refusals(dapr_http: DaprHttp, dapr_http_empty: DaprHttp) -> None:
    for path in (
        "/v1.0/configuration/nope",
        "/v1.0/configuration/nope/subscribe",
        "/v1.0/configuration/nope/x/unsubscribe",
    ):
        unknown = await dapr_http("GET", path)
        assert unknown.error == (400, "ERR_CONFIGURATION_STORE_NOT_FOUND", "configuration store nope not found")
        none = await dapr_http_empty("GET", path)
        assert none.error == (500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED", "configuration stores not configured")


async def test_subscribe_sends_changes_to_the_app(dapr_http: DaprHttp, http_app: AppServer) -> None:
    key = new_key()
    await save(dapr_http, **{key: "before"})
    reply = await dapr_http("GET", f"/v1.0/configuration/{CONFIG}/subscribe", params=[("key", key)])
    assert reply.status == 200
    subscription = reply.json()["id"]

    async def update_with(value: str) -> None:
        while True:
            path, event = await http_app.updates.get()
            if event["items"].get(key, {}).get("value") == value:
                assert (path, event["id"]) == (f"/configuration/{CONFIG}/{key}", subscription)
                return

    await asyncio.wait_for(update_with("before"), WITHIN)
    await save(dapr_http, **{key: "after"})
    await asyncio.wait_for(update_with("after"), WITHIN)

    done = await dapr_http("GET", f"/v1.0/configuration/{CONFIG}/{subscription}/unsubscribe")
    assert (done.status, done.json()) == (200, {"ok": True})
    again = await dapr_http("GET", f"/v1.0/configuration/{CONFIG}/{subscription}/unsubscribe")
    assert (again.status, again.json()) == (
        500,
        {"message": f"failed to unsubscribe to configuration request {subscription}: not found"},
    )


async def test_subscribe_needs_an_app(http_session: aiohttp.ClientSession) -> None:
    config = {"app": {"app_id": "no-app"}, "config_store": {CONFIG: {"type": "in-memory", "metadata": {}}}}
    async with dapr_http_sidecar(config, http_session) as alone:
        reply = await alone("GET", f"/v1.0/configuration/{CONFIG}/subscribe", params=[("key", "k")])
        assert reply.error == (
            500,
            "ERR_APP_CHANNEL_NIL",
            "app channel is not initialized. cannot subscribe to configuration updates",
        )


# ---- locks ----


async def test_lock_and_unlock(dapr_http: DaprHttp) -> None:
    resource = f"res-{uuid.uuid4().hex[:8]}"
    path = f"/v1.0-alpha1/lock/{LOCK}"
    body = {"resourceId": resource, "lockOwner": "a", "expiryInSeconds": 30}
    first = await dapr_http("POST", path, json_body=body)
    assert (first.status, first.json()) == (200, {"success": True})
    taken = await dapr_http("POST", path, json_body={**body, "lockOwner": "b"})
    assert taken.json() == {"success": False}
    # A lock taken over HTTP is held through Dapr's gRPC API too.
    async with grpc.aio.insecure_channel(dapr_http.grpc_address) as channel:
        assert not await DaprApi(channel).try_lock(LOCK, resource, "c", 30)
    unlock = f"/v1.0-alpha1/unlock/{LOCK}"
    others = await dapr_http("POST", unlock, json_body={"resource_id": resource, "lock_owner": "b"})
    assert (others.status, others.json()) == (200, {"status": 2})
    released = await dapr_http("POST", unlock, json_body={"resourceId": resource, "lockOwner": "a"})
    assert released.json() == {"status": 0}
    gone = await dapr_http("POST", unlock, json_body={"resourceId": resource, "lockOwner": "a"})
    assert gone.json() == {"status": 1}
    as_text = await dapr_http("POST", path, json_body={**body, "expiryInSeconds": "5", "lockOwner": "z"})
    assert as_text.json() == {"success": True}


async def test_lock_refusals(dapr_http: DaprHttp, dapr_http_empty: DaprHttp) -> None:
    lock, unlock = f"/v1.0-alpha1/lock/{LOCK}", f"/v1.0-alpha1/unlock/{LOCK}"
    cases = [
        # daprd checks the expiry first.
        (lock, {}, (400, "ERR_MALFORMED_REQUEST", f"ExpiryInSeconds is not positive in lock store {LOCK}")),
        (lock, {"expiryInSeconds": 1}, (400, "ERR_MALFORMED_REQUEST", f"ResourceId is empty in lock store {LOCK}")),
        (
            lock,
            {"expiryInSeconds": 1, "resourceId": "r"},
            (400, "ERR_MALFORMED_REQUEST", f"LockOwner is empty in lock store {LOCK}"),
        ),
        (
            lock,
            {"expiryInSeconds": 1, "resourceId": "a||b", "lockOwner": "o"},
            (500, "ERR_TRY_LOCK", "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'"),
        ),
        (
            "/v1.0-alpha1/lock/nope",
            {"expiryInSeconds": 1, "resourceId": "r", "lockOwner": "o"},
            (400, "ERR_LOCK_STORE_NOT_FOUND", "lock store nope not found"),
        ),
        (unlock, {"lockOwner": "o"}, (400, "ERR_MALFORMED_REQUEST", f"ResourceId is empty in lock store {LOCK}")),
        (
            unlock,
            {"resourceId": "a||b", "lockOwner": "o"},
            (500, "ERR_UNLOCK", "failed to release lock: input key/keyPrefix 'a||b' can't contain '||'"),
        ),
    ]
    for path, body, expected in cases:
        assert (await dapr_http("POST", path, json_body=body)).error == expected, body
    none = await dapr_http_empty("POST", lock, json_body={"expiryInSeconds": 1, "resourceId": "r", "lockOwner": "o"})
    assert none.error == (500, "ERR_LOCK_STORE_NOT_CONFIGURED", "lock store is not configured")
    for bad in ("{", "[]", '{"expiryInSeconds": "soon"}'):
        status, code, message = (await dapr_http("POST", lock, data=bad)).error
        assert (status, code) == (400, "ERR_MALFORMED_REQUEST"), bad
        assert message.startswith("failed deserializing HTTP body: ")
