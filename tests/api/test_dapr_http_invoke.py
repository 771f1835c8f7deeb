"""Dapr's HTTP service invocation (daprd's /v1.0/invoke/<app>/method/<method> and the
`dapr-app-id` header) through the invocation engine to the sidecar's HTTP app, which echoes
what it received."""

from __future__ import annotations

import pytest

from tests.api.conftest import APP_ID, DaprHttp


async def test_path_form_carries_verb_query_headers_and_body(dapr_http: DaprHttp) -> None:
    reply = await dapr_http(
        "PUT",
        f"/v1.0/invoke/{APP_ID}/method/orders/42?expand=items&a=b%20c",
        data="payload",
        headers={"Content-Type": "text/plain", "X-Custom": "yes"},
    )
    assert reply.status == 200
    assert reply.headers["X-Echo"] == "yes"
    assert reply.headers["Content-Type"].startswith("application/json")
    echoed = reply.json()
    assert (echoed["method"], echoed["path"], echoed["query"]) == ("PUT", "/orders/42", "expand=items&a=b%20c")
    assert echoed["body"] == "payload"
    assert echoed["headers"]["Content-Type"] == "text/plain"
    assert echoed["headers"]["x-custom"] == "yes"


@pytest.mark.parametrize("verb", ["GET", "POST", "DELETE", "PATCH"])
async def test_every_verb(dapr_http: DaprHttp, verb: str) -> None:
    reply = await dapr_http(verb, f"/v1.0/invoke/{APP_ID}/method/things")
    assert (reply.status, reply.json()["method"]) == (200, verb)


async def test_header_form_takes_the_path_as_method(dapr_http: DaprHttp) -> None:
    reply = await dapr_http("POST", "/hello//world/?x=1", data="hi", headers={"dapr-app-id": APP_ID})
    echoed = reply.json()
    assert (reply.status, echoed["path"], echoed["query"], echoed["body"]) == (200, "/hello/world", "x=1", "hi")
    # The header addressed the sidecar; the app does not see it.
    assert "dapr-app-id" not in {k.lower() for k in echoed["headers"]}
    # Even over a path of the API's own.
    own = await dapr_http("GET", "/v1.0/invoke/other/method/m", headers={"dapr-app-id": APP_ID})
    assert own.json()["path"] == "/v1.0/invoke/other/method/m"


async def test_no_app_id_is_daprds_404(dapr_http: DaprHttp) -> None:
    expected = (404, "ERR_DIRECT_INVOKE", "failed getting app id either from the URL path or the header dapr-app-id")
    for method, path in [
        ("GET", "/v1.0/nothing/here"),
        ("GET", "/v1.0/invoke/"),
        ("GET", "/v1.0/invoke/app/notmethod/x"),
        # A verb a block endpoint does not take falls back to invocation, as in daprd.
        ("GET", "/v1.0/state/memory"),
    ]:
        assert (await dapr_http(method, path)).error == expected, path


async def test_failures_are_err_direct_invoke(dapr_http: DaprHttp) -> None:
    unknown = await dapr_http("GET", "/v1.0/invoke/other-app/method/m")
    status, code, message = unknown.error
    assert (status, code) == (500, "ERR_DIRECT_INVOKE")
    assert message.startswith("failed to invoke, id: other-app, err: invoker not init: ")
    failing = await dapr_http("GET", f"/v1.0/invoke/{APP_ID}/method/status/503")
    assert failing.error == (
        500,
        "ERR_DIRECT_INVOKE",
        f"failed to invoke, id: {APP_ID}, err: http response code 503, body: status body",
    )


async def test_an_app_that_takes_no_invocations(dapr_http_empty: DaprHttp) -> None:
    reply = await dapr_http_empty("GET", "/v1.0/invoke/api-empty/method/m")
    status, code, message = reply.error
    assert (status, code) == (500, "ERR_DIRECT_INVOKE")
    assert "this sidecar's app takes no invocations" in message
