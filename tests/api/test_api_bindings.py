"""InvokeBinding of both gRPC APIs on http bindings to a local test server: replies, and the
exact code and message of every failure, in each API's order of checks."""

from __future__ import annotations

import uuid

import grpc

from tests.api.clients import DAPR, LAYOTTO, Api, failure
from tests.api.conftest import KV, WEB

C = grpc.StatusCode
#: The http binding's operations, in the order the messages list them.
HTTP_OPERATIONS = "create get head post put patch delete options trace"
PREFIX = {LAYOTTO: "error when invoke output binding", DAPR: "error invoking output binding"}


async def test_write_then_read(api: Api) -> None:
    key = uuid.uuid4().hex
    _, created = await api.invoke_binding(KV, "create", b"payload", {"path": key})
    assert (created["statusCode"], created["status"]) == ("201", "201 Created")
    data, read = await api.invoke_binding(KV, "get", b"", {"path": key})
    assert (data, read["statusCode"]) == (b"payload", "200")


async def test_failures(api: Api) -> None:
    prefix = PREFIX[api.name]
    assert await failure(api.invoke_binding("nope", "get")) == (
        C.INTERNAL,
        f"{prefix} nope: couldn't find output binding nope",
    )
    # Layotto checks the operation before looking the binding up, Dapr the other way round.
    missing_operation = {
        LAYOTTO: f"{prefix} nope: operation field is missing from request",
        DAPR: f"{prefix} nope: couldn't find output binding nope",
    }
    assert await failure(api.invoke_binding("nope", "")) == (C.INTERNAL, missing_operation[api.name])
    assert await failure(api.invoke_binding(KV, "")) == (
        C.INTERNAL,
        f"{prefix} {KV}: operation field is missing from request",
    )
    assert await failure(api.invoke_binding(KV, "bogus")) == (
        C.INTERNAL,
        f"{prefix} {KV}: binding {KV} does not support operation bogus. supported operations:{HTTP_OPERATIONS}",
    )
    assert await failure(api.invoke_binding(WEB, "get", b"", {"path": "status/500"})) == (
        C.INTERNAL,
        f"{prefix} {WEB}: received status code 500",
    )
    # A bad request: Dapr says INVALID_ARGUMENT, Layotto (as upstream) INTERNAL.
    bad_request = {LAYOTTO: C.INTERNAL, DAPR: C.INVALID_ARGUMENT}
    assert await failure(api.invoke_binding(KV, "get", b"", {"path": "../escape"})) == (
        bad_request[api.name],
        f"{prefix} {KV}: invalid path: ../escape",
    )


async def test_no_binding_configured(empty: Api) -> None:
    assert await failure(empty.invoke_binding(KV, "get")) == (
        C.INTERNAL,
        f"{PREFIX[empty.name]} {KV}: couldn't find output binding {KV}",
    )
