"""Input bindings reach apps the way daprd delivers them: an HTTP app (`OPTIONS /<route>` says
which bindings it takes, events are POSTed there, the status acks or fails them) and a Dapr gRPC
app (`ListInputBindings`, `OnBindingEvent`, a gRPC error fails the event), each with cron ticks
and rabbitmq, MQTT and redis (list) events. A failed event comes again; a binding the app does
not route or list gets nothing (unless its `direction` says `input`); `to` in the reply writes
the reply's data to an output binding (an `http` binding POSTing to a sink), and the reply's
states are saved to a Redis state store, read back through the GetState APIs. A binding whose
`direction` says only `input` is no output binding for any API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import aiomqtt
import grpc
import pytest
import redis.asyncio as aioredis
import yaml
from aiohttp import web

from layotto.config import dapr_yaml, layotto_json
from layotto.runtime.bindings import InputBindingService
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.httpapp import http_server
from tests.support.services import require
from tests.support.sidecar import free_port, layotto_config

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
WAIT = 10.0
APP_ID = "bindings-app"
#: The state store the replies save to (default key layout: `<app id>||<key>`).
STORE = "store"

Received = tuple[str, bytes, dict[str, str]]


class Names:
    """This test's backend names (queue, topic, list, consumer), unique per run."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.queue = f"layotto-e2e-input-{tag}"
        self.topic = f"layotto/e2e/input/{tag}"
        self.list_key = f"layotto-e2e-input-{tag}"
        self.inbox_key = f"layotto-e2e-inbox-{tag}"
        self.consumer = f"layotto-e2e-{tag}"
        #: The keys the app's replies save state under (the app's keys, without the prefix).
        self.state_key = f"layotto-e2e-saved-{tag}"

    def saved(self, suffix: str) -> str:
        return f"{self.state_key}-{suffix}"

    def stored(self, suffix: str) -> str:
        """The Redis key of the state saved as `saved(suffix)`: with the app's key prefix."""
        return f"{APP_ID}||{self.saved(suffix)}"


def components(names: Names, sink_port: int, *, rabbitmq_route: str = "") -> str:
    """The Dapr component YAML: four inputs, a cron the app does not take, a sink, a redis list
    whose direction says input only, a state store."""

    def component(name: str, kind: str, block: str = "bindings", **metadata: str) -> dict[str, Any]:
        return {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": name},
            "spec": {
                "type": f"{block}.{kind}",
                "version": "v1",
                "metadata": [{"name": k, "value": v} for k, v in metadata.items()],
            },
        }

    route = {"route": rabbitmq_route} if rabbitmq_route else {}
    documents = [
        component("cron", "cron", schedule="@every 1s"),
        component("unwanted", "cron", schedule="@every 1s"),
        component("ticker", "cron", schedule="@every 1s", direction="input"),
        component("rmq", "rabbitmq", host=RABBITMQ_URL, queueName=names.queue, **route),
        component("mqtt", "mqtt3", url="tcp://127.0.0.1:1883", topic=names.topic, consumerID=names.consumer),
        component("jobs", "redis", redisHost="127.0.0.1:6379", listKey=names.list_key, consumerID=names.consumer),
        component("sink", "http", url=f"http://127.0.0.1:{sink_port}/sink", direction="output"),
        # A redis binding has output operations, but `direction` makes it an input only.
        component(
            "inbox",
            "redis",
            redisHost="127.0.0.1:6379",
            listKey=names.inbox_key,
            consumerID=names.consumer,
            direction="input",
        ),
        component(STORE, "redis", "state", redisHost="127.0.0.1:6379"),
    ]
    return yaml.safe_dump_all(documents)


class Recorder:
    """What the app got, by binding; `fail-once` data fails its first delivery; the apps answer
    `forward` data with `to: [sink]`, `save` with states for the store (the gRPC app answers
    `save-elsewhere` with states for a store that does not exist and `to: [sink]`)."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.events: dict[str, asyncio.Queue[Received]] = {}
        self.failed: set[bytes] = set()

    def queue(self, name: str) -> asyncio.Queue[Received]:
        return self.events.setdefault(name, asyncio.Queue())

    def got(self, name: str, data: bytes, metadata: dict[str, str]) -> str:
        """Record the event; the answer: "fail", "forward" or "ok"."""
        self.queue(name).put_nowait((name, data, metadata))
        if data == b"fail-once" and data not in self.failed:
            self.failed.add(data)
            return "fail"
        return data.decode() if data in (b"forward", b"save", b"save-elsewhere") else "ok"

    async def next(self, name: str) -> Received:
        return await asyncio.wait_for(self.queue(name).get(), WAIT)


def http_app(recorder: Recorder, routes: dict[str, str]) -> web.Application:
    """An aiohttp app with a POST route per binding it takes (`routes`: path -> binding), and
    `/sink`, where the sink binding POSTs."""
    app = web.Application()

    def handler(binding: str) -> Any:
        async def on_event(request: web.Request) -> web.Response:
            answer = recorder.got(binding, await request.read(), dict(request.headers))
            if answer == "fail":
                return web.Response(status=500, text="not now")
            if answer == "forward":
                return web.json_response({"to": ["sink"], "data": {"forwarded": binding}})
            if answer == "save":
                saved = recorder.names.saved
                return web.json_response(
                    {
                        "storeName": STORE,
                        "state": [
                            {"key": saved("http"), "value": {"from": binding, "n": 2.0}},
                            {"key": saved("http-text"), "value": "hi", "metadata": {"ttlInSeconds": "600"}},
                        ],
                    }
                )
            return web.Response(status=200)

        return on_event

    for path, binding in routes.items():
        app.router.add_post(path, handler(binding))
    app.router.add_post("/sink", handler("sink"))
    return app


@contextlib.asynccontextmanager
async def sidecar_for(app: dict[str, Any], resources: Path) -> AsyncIterator[tuple[Sidecar, Any, Apis]]:
    port, http_port = free_port(), free_port()
    grpc_config = {"app": {"app_id": APP_ID, **app}}
    cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=port), source="<test>")
    cfg.dapr_http_address = f"127.0.0.1:{http_port}"
    dapr_yaml.load_into(cfg, str(resources))
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        service = next(s for s in sidecar.rt.services if isinstance(s, InputBindingService))
        await asyncio.wait_for(service.ready.wait(), WAIT)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel, aiohttp.ClientSession() as http:
            layotto = runtime_pb2_grpc.RuntimeStub(channel)
            yield sidecar, layotto, Apis(layotto, dapr_stub(channel), http, f"http://127.0.0.1:{http_port}")
    finally:
        await sidecar.stop()


def dapr_stub(channel: grpc.aio.Channel) -> Any:
    from dapr.proto.runtime.v1 import dapr_pb2_grpc

    return dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]


class Apis:
    """The sidecar's APIs: Layotto's and Dapr's gRPC (one port), Dapr's HTTP."""

    def __init__(self, layotto: Any, dapr: Any, http: aiohttp.ClientSession, http_base: str) -> None:
        self.layotto, self.dapr, self.http, self.http_base = layotto, dapr, http, http_base

    async def invoke_binding_failures(self, name: str) -> list[tuple[str, str]]:
        """What InvokeBinding (`create`) on `name` answers in each API: (code, message)."""
        from dapr.proto.runtime.v1 import binding_pb2 as dbinding

        answers = []
        for call in (
            self.layotto.InvokeBinding(pb.InvokeBindingRequest(name=name, operation="create")),
            self.dapr.InvokeBinding(dbinding.InvokeBindingRequest(name=name, operation="create")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await call
            answers.append((failed.value.code().name, failed.value.details() or ""))
        url = f"{self.http_base}/v1.0/bindings/{name}"
        async with self.http.post(url, json={"operation": "create"}) as reply:
            body = await reply.json()
            answers.append((f"{reply.status} {body['errorCode']}", body["message"]))
        return answers


async def assert_no_output_binding(apis: Apis, name: str) -> None:
    """Every API answers InvokeBinding on `name` as on a binding that does not exist."""
    unknown = f"unknown-{uuid.uuid4().hex[:6]}"
    expected = [(code, message.replace(unknown, name)) for code, message in await apis.invoke_binding_failures(unknown)]
    assert await apis.invoke_binding_failures(name) == expected
    assert expected == [
        ("INTERNAL", f"error when invoke output binding {name}: couldn't find output binding {name}"),
        ("INTERNAL", f"error invoking output binding {name}: couldn't find output binding {name}"),
        ("500 ERR_INVOKE_OUTPUT_BINDING", f"error invoking output binding {name}: couldn't find output binding {name}"),
    ]


async def one_by_one(names: Names, *entries: bytes) -> None:
    """Push `entries` to the `jobs` list, taken in this order. The list binding delivers one event
    at a time, acked once the reply was acted on: when the app gets an entry, the replies to
    those before it have been saved and written."""
    async with aioredis.Redis() as client:
        for entry in entries:
            await client.lpush(names.list_key, entry)


@contextlib.asynccontextmanager
async def backends(names: Names) -> AsyncIterator[None]:
    for service in ("rabbitmq", "mqtt", "redis"):
        require(service)
    try:
        yield
    finally:
        async with aioredis.Redis() as client:
            await client.delete(
                names.list_key,
                f"{names.list_key}:processing:{names.consumer}",
                names.inbox_key,
                f"{names.inbox_key}:processing:{names.consumer}",
                *(names.stored(suffix) for suffix in ("http", "http-text", "grpc")),
            )
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            await (await connection.channel()).queue_delete(names.queue)
        async with aiomqtt.Client("127.0.0.1", identifier=f"{names.consumer}-consumer", clean_session=True):
            pass  # ends the persistent session the binding kept


async def send_all(stub: Any, names: Names) -> None:
    """One event on each queue binding: rabbitmq fails once, redis asks for a forward."""
    await stub.InvokeBinding(pb.InvokeBindingRequest(name="rmq", operation="create", data=b"fail-once"))
    await stub.InvokeBinding(pb.InvokeBindingRequest(name="mqtt", operation="create", data=b"over mqtt"))
    async with aioredis.Redis() as client:
        await client.lpush(names.list_key, b"forward")


def _service(sidecar: Sidecar) -> InputBindingService:
    return next(s for s in sidecar.rt.services if isinstance(s, InputBindingService))


async def test_an_http_app_gets_the_events_of_the_bindings_it_routes(tmp_path: Path) -> None:
    names = Names()
    recorder = Recorder(names)
    routes = {"/cron": "cron", "/queue-events": "rmq", "/mqtt": "mqtt", "/jobs": "jobs", "/ticker": "ticker"}
    async with backends(names), http_server(http_app(recorder, routes)) as port:
        (tmp_path / "components.yaml").write_text(components(names, port, rabbitmq_route="/queue-events"))
        async with sidecar_for({"http_port": port}, tmp_path) as (sidecar, stub, apis):
            assert sorted(_service(sidecar).readings) == ["cron", "inbox", "jobs", "mqtt", "rmq", "ticker"]
            await send_all(stub, names)

            _, data, headers = await recorder.next("cron")
            assert data == b"" and headers["Content-Type"] == "application/json"
            assert headers["readTimeUTC"].endswith(" +0000 UTC") and headers["timeZone"] == "Local"

            # A 500 fails the event: RabbitMQ gives it again, to the route in `route` metadata.
            assert (await recorder.next("rmq"))[1] == b"fail-once"
            assert (await recorder.next("rmq"))[1] == b"fail-once"
            assert (await recorder.next("mqtt"))[1] == b"over mqtt"

            # The reply's `to` writes its `data` to the sink binding (an http POST to /sink).
            _, data, headers = await recorder.next("jobs")
            assert data == b"forward" and headers["key"] == names.list_key
            assert json.loads((await recorder.next("sink"))[1]) == {"forwarded": "jobs"}

            # The reply's states are saved as the HTTP state API saves them: the JSON value as
            # Go writes it, under the app's key prefix, with the item's metadata (a TTL).
            await one_by_one(names, b"save", b"after")
            assert (await recorder.next("jobs"))[1] == b"save"
            assert (await recorder.next("jobs"))[1] == b"after"
            saved = await stub.GetState(pb.GetStateRequest(store_name=STORE, key=names.saved("http")))
            assert saved.data == b'{"from":"jobs","n":2}'
            text = await stub.GetState(pb.GetStateRequest(store_name=STORE, key=names.saved("http-text")))
            assert text.data == b'"hi"'
            async with aioredis.Redis() as client:
                assert await client.hget(names.stored("http"), "data") == saved.data
                assert 0 < await client.ttl(names.stored("http-text")) <= 600

            # `inbox` has output operations, but its direction says input: no API writes to it.
            await assert_no_output_binding(apis, "inbox")

            # Two more ticks: the unrouted cron would have ticked by now too.
            await recorder.next("cron")
            await recorder.next("cron")
            assert recorder.queue("unwanted").empty() and "unwanted" not in _service(sidecar).readings


async def test_a_dapr_grpc_app_gets_the_events_of_the_bindings_it_lists(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dapr.proto.runtime.v1 import appcallback_pb2 as dcb
    from dapr.proto.runtime.v1 import appcallback_pb2_grpc as dcb_grpc

    names = Names()
    recorder = Recorder(names)

    from dapr.proto.common.v1 import common_pb2 as dcommon
    from dapr.proto.runtime.v1 import state_pb2 as dstate

    class DaprApp(dcb_grpc.AppCallbackServicer):
        async def ListInputBindings(self, request: Any, context: Any) -> Any:
            return dcb.ListInputBindingsResponse(bindings=["cron", "rmq", "mqtt", "jobs"])

        async def OnBindingEvent(self, request: Any, context: Any) -> Any:
            answer = recorder.got(request.name, request.data, dict(request.metadata))
            if answer == "fail":
                await context.abort(grpc.StatusCode.INTERNAL, "not now")
            if answer == "forward":
                return dcb.BindingEventResponse(to=["sink"], data=b'{"forwarded":"grpc"}')
            if answer == "save":
                item = dcommon.StateItem(key=names.saved("grpc"), value=b"raw \x00 bytes", etag=dcommon.Etag(value="0"))
                return dcb.BindingEventResponse(store_name=STORE, states=[item])
            if answer == "save-elsewhere":
                item = dcommon.StateItem(key=names.saved("nowhere"), value=b"lost")
                return dcb.BindingEventResponse(
                    store_name="missing", states=[item], to=["sink"], data=b'{"saved":"nowhere"}'
                )
            return dcb.BindingEventResponse()

    server = grpc.aio.server()
    dcb_grpc.add_AppCallbackServicer_to_server(DaprApp(), server)  # type: ignore[no-untyped-call]
    app_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with backends(names), http_server(http_app(recorder, {})) as sink_port:
            (tmp_path / "components.yaml").write_text(components(names, sink_port))
            # No callback_api: the callback API is found by asking (Layotto's has no bindings).
            async with sidecar_for({"grpc_callback_port": app_port}, tmp_path) as (sidecar, stub, apis):
                # `ticker` and `inbox` are not listed, but their direction says input: they are read.
                assert sorted(_service(sidecar).readings) == ["cron", "inbox", "jobs", "mqtt", "rmq", "ticker"]
                await send_all(stub, names)

                _, data, metadata = await recorder.next("cron")
                assert data == b"" and {"readTimeUTC", "timeZone"} <= metadata.keys()
                assert (await recorder.next("ticker"))[1] == b""
                # A gRPC error fails the event: RabbitMQ gives it again.
                assert (await recorder.next("rmq"))[1] == b"fail-once"
                assert (await recorder.next("rmq"))[1] == b"fail-once"
                assert (await recorder.next("mqtt"))[2]["topic"] == names.topic
                assert (await recorder.next("jobs"))[1] == b"forward"
                assert json.loads((await recorder.next("sink"))[1]) == {"forwarded": "grpc"}

                # The reply's states are saved as SaveState saves its items (raw bytes; etag "0"
                # is none), readable with Dapr's GetState. A store that does not exist is logged:
                # the reply's `to` is written all the same and the event is taken, not redelivered.
                with caplog.at_level(logging.WARNING, logger="layotto.bindings.input"):
                    await one_by_one(names, b"save", b"save-elsewhere", b"after")
                    assert [(await recorder.next("jobs"))[1] for _ in range(3)] == [
                        b"save",
                        b"save-elsewhere",
                        b"after",
                    ]
                saved = await apis.dapr.GetState(dstate.GetStateRequest(store_name=STORE, key=names.saved("grpc")))
                assert saved.data == b"raw \x00 bytes"
                assert json.loads((await recorder.next("sink"))[1]) == {"saved": "nowhere"}
                assert any(
                    "store 'missing'" in r.getMessage() and "state store not found" in r.getMessage()
                    for r in caplog.records
                )

                await recorder.next("cron")
                await recorder.next("cron")
                assert recorder.queue("unwanted").empty()
    finally:
        await server.stop(None)
