"""InvokeService to this sidecar's own app, over gRPC (AppCallback.OnInvoke) and over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.e2e.invoke_apps import grpc_app, http_app
from tests.support.sidecar import free_port, running_sidecar

Verb = pb.HTTPExtension.Verb


def _request(app_id: str, method: str, data: bytes = b"", **kwargs: Any) -> pb.InvokeServiceRequest:
    return pb.InvokeServiceRequest(
        id=app_id, message=pb.CommonInvokeRequest(method=method, data=any_pb2.Any(value=data), **kwargs)
    )


async def _call(
    address: str, request: pb.InvokeServiceRequest, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[pb.InvokeResponse, dict[str, str]]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = runtime_pb2_grpc.RuntimeStub(channel).InvokeService(request, metadata=metadata)
        reply = await call
        headers = {k: v for k, v in (await call.initial_metadata() or ()) if isinstance(v, str)}
        return reply, headers


async def _fails(address: str, request: pb.InvokeServiceRequest, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(address, request, metadata)
    return info.value


async def test_grpc_app_round_trip_with_headers_both_ways() -> None:
    async with (
        grpc_app("app-a") as (app, port),
        running_sidecar({"app": {"app_id": "app-a", "grpc_callback_port": port}}) as (_, address),
    ):
        request = _request(
            "app-a",
            "orders/create",
            b'{"n": 1}',
            content_type="application/json",
            http_extension=pb.HTTPExtension(verb=Verb.POST, querystring="a=1&b=2"),
        )
        reply, headers = await _call(address, request, (("x-request-id", "r-1"), ("dapr-api-token", "secret")))
        assert reply.content_type == "application/x-echo"
        doc = json.loads(reply.data.value)
        assert doc == {
            "app": "app-a",
            "method": "orders/create",
            "data": '{"n": 1}',
            "content_type": "application/json",
            "verb": "POST",
            "query": "a=1&b=2",
            "metadata": doc["metadata"],
        }
        assert doc["metadata"]["x-request-id"] == "r-1"
        assert "dapr-api-token" not in doc["metadata"], "sidecar credentials are not the app's business"
        assert not any(k.startswith((":", "grpc-")) for k in doc["metadata"]), doc["metadata"]
        assert headers["x-answered-by"] == "app-a"
        # Without an http_extension no verb is sent.
        reply, _ = await _call(address, _request("app-a", "m"))
        assert json.loads(reply.data.value)["verb"] == ""
        assert len(app.seen.calls) == 2


async def test_app_errors_timeouts_and_absence() -> None:
    async with (
        grpc_app("app-a") as (_, port),
        running_sidecar({"app": {"app_id": "app-a", "grpc_callback_port": port}}) as (_, address),
    ):
        error = await _fails(address, _request("app-a", "fail"))
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "bad input from the app")

        started = time.monotonic()
        error = await _fails(address, _request("app-a", "sleep"), (("rpc_request_timeout", "300"),))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error.details() == "timeout after 300 ms invoking method 'sleep' of app 'app-a'"
        assert time.monotonic() - started < 1.5

        error = await _fails(address, _request("app-z", "m"))
        assert error.code() == grpc.StatusCode.UNKNOWN
        assert error.details().startswith("invoker not init")

    async with running_sidecar({"app": {"app_id": "app-a", "grpc_callback_port": free_port()}}) as (_, address):
        error = await _fails(address, _request("app-a", "m"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "app 'app-a' at 127.0.0.1:" in error.details()
        assert error.details().endswith("is unreachable: connection refused")


async def test_http_app_verb_querystring_headers_and_errors() -> None:
    async with (
        http_app("app-h") as (seen, port),
        running_sidecar({"app": {"app_id": "app-h", "http_port": port}}) as (
            _,
            address,
        ),
    ):
        request = _request(
            "app-h",
            "/v1/orders/7",
            b"payload",
            content_type="text/plain",
            http_extension=pb.HTTPExtension(verb=Verb.PUT, querystring="x=1&y=two"),
        )
        reply, headers = await _call(address, request, (("x-trace", "t-9"),))
        doc = json.loads(reply.data.value)
        assert (doc["method"], doc["path"], doc["query"], doc["body"]) == (
            "PUT",
            "/v1/orders/7",
            "x=1&y=two",
            "payload",
        )
        assert doc["headers"]["x-trace"] == "t-9"
        assert doc["headers"]["id"] == "app-h"
        assert doc["headers"]["content-type"] == "text/plain"
        assert reply.content_type.startswith("application/x-echo")
        assert headers["x-answered-by"] == "app-h"
        assert "content-length" not in headers

        reply, _ = await _call(address, _request("app-h", "plain"))
        assert json.loads(reply.data.value)["method"] == "GET"

        error = await _fails(address, _request("app-h", "boom", http_extension=pb.HTTPExtension(verb=Verb.POST)))
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "http response code 500, body: boom")
        assert len(seen.calls) == 3
