"""The Python SDK's pub/sub and callback app: App dispatch rules, deliveries through a
sidecar (callback and streaming subscriptions), and service invocation into the App."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from layotto_sdk import AsyncClient, Client, LayottoError, TopicEvent, TopicEventStatus
from layotto_sdk.app import App, Drop, InvokeRequest, Response

from layotto.runtime.delivery import DeliveryService
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc
from tests.support.sidecar import running_sidecar

PUBSUB = "mem"


def _name() -> str:
    return f"sdk-{uuid.uuid4().hex[:12]}"


# ---- the App's own rules, driven directly as a sidecar would -------------------------------


@pytest.fixture
async def app_stub() -> AsyncIterator[appcallback_pb2_grpc.AppCallbackAsyncStub]:
    app = App()

    @app.subscribe("ps", "ok", metadata={"consumerID": "billing"})
    def ok(event: TopicEvent) -> None:
        assert event.json() == {"n": 1}

    @app.subscribe("ps", "fails")
    async def fails(event: TopicEvent) -> None:
        raise RuntimeError("not now")

    @app.subscribe("ps", "drop-raised")
    def drop_raised(event: TopicEvent) -> None:
        raise Drop()

    @app.subscribe("ps", "drop-returned")
    async def drop_returned(event: TopicEvent) -> Any:
        return Drop

    @app.subscribe("ps", "says-retry")
    def says_retry(event: TopicEvent) -> TopicEventStatus:
        return TopicEventStatus.RETRY

    @app.method("echo")
    async def echo(request: InvokeRequest) -> Any:
        return {"got": request.text(), "verb": request.http_verb, "query": request.querystring}

    @app.method("raw")
    def raw(request: InvokeRequest) -> Response:
        return Response(b"\x01", content_type="application/x-raw", metadata={"x-from": "app"})

    @app.method("missing")
    def missing(request: InvokeRequest) -> None:
        raise LayottoError(grpc.StatusCode.NOT_FOUND, "no such order")

    with pytest.raises(ValueError):
        app.add_method("echo", echo)
    port = await app.start(0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield appcallback_pb2_grpc.AppCallbackStub(channel)
    finally:
        await app.stop()


async def test_app_lists_subscriptions(app_stub: appcallback_pb2_grpc.AppCallbackAsyncStub) -> None:
    reply = await app_stub.ListTopicSubscriptions(empty_pb2.Empty())
    subs = {(s.pubsub_name, s.topic): dict(s.metadata) for s in reply.subscriptions}
    assert subs[("ps", "ok")] == {"consumerID": "billing"}
    assert set(subs) == {("ps", t) for t in ("ok", "fails", "drop-raised", "drop-returned", "says-retry")}


@pytest.mark.parametrize(
    ("topic", "status"),
    [
        ("ok", cb.TopicEventResponse.SUCCESS),
        ("fails", cb.TopicEventResponse.RETRY),
        ("drop-raised", cb.TopicEventResponse.DROP),
        ("drop-returned", cb.TopicEventResponse.DROP),
        ("says-retry", cb.TopicEventResponse.RETRY),
        ("nobody-listens", cb.TopicEventResponse.DROP),
    ],
)
async def test_handler_outcome_decides_the_status(
    app_stub: appcallback_pb2_grpc.AppCallbackAsyncStub, topic: str, status: int
) -> None:
    event = cb.TopicEventRequest(
        id="e1", pubsub_name="ps", topic=topic, data=b'{"n":1}', data_content_type="application/json"
    )
    assert (await app_stub.OnTopicEvent(event)).status == status


async def test_app_methods(app_stub: appcallback_pb2_grpc.AppCallbackAsyncStub) -> None:
    request = cb.AppInvokeRequest(method="echo", http_verb="POST", querystring="a=1")
    request.data.value = b"hi"
    reply = await app_stub.OnInvoke(request)
    assert reply.content_type == "application/json"
    assert reply.data.value == b'{"got":"hi","verb":"POST","query":"a=1"}'
    reply = await app_stub.OnInvoke(cb.AppInvokeRequest(method="raw"))
    assert (reply.data.value, reply.content_type, dict(reply.metadata)) == (
        b"\x01",
        "application/x-raw",
        {"x-from": "app"},
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await app_stub.OnInvoke(cb.AppInvokeRequest(method="missing"))
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.NOT_FOUND, "no such order")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await app_stub.OnInvoke(cb.AppInvokeRequest(method="nope"))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---- through a sidecar ------------------------------------------------------------------------


class Received:
    """Events handed over from handlers (sync ones run in worker threads)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, TopicEvent]] = asyncio.Queue()

    def put(self, tag: str, event: TopicEvent) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (tag, event))

    async def get(self) -> tuple[str, TopicEvent]:
        return await asyncio.wait_for(self.queue.get(), 10)


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[tuple[str, Received, dict[str, str]]]:
    received = Received()
    topics = {"async": _name(), "sync": _name(), "flaky": _name()}
    attempts: dict[str, int] = {}
    app = App()

    @app.subscribe(PUBSUB, topics["async"])
    async def on_async(event: TopicEvent) -> None:
        received.put("async", event)

    @app.subscribe(PUBSUB, topics["sync"])
    def on_sync(event: TopicEvent) -> None:
        received.put("sync", event)

    @app.subscribe(PUBSUB, topics["flaky"])
    def on_flaky(event: TopicEvent) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        received.put(f"flaky-{attempts[event.id]}", event)
        if attempts[event.id] == 1:
            raise RuntimeError("first attempt fails")

    @app.method("greet")
    def greet(request: InvokeRequest) -> str:
        return f"hello {request.text()} via {request.http_verb}"

    port = await app.start(0)
    config = {
        "app": {"app_id": "sdk-app", "grpc_callback_port": port},
        "pub_subs": {PUBSUB: {"type": "in-memory"}},
    }
    try:
        async with running_sidecar(config) as (sidecar, address):
            # The sidecar subscribes the app's topics in the background; the in-memory
            # broker keeps no events for topics nobody subscribed yet.
            for service in sidecar.rt.services:
                if isinstance(service, DeliveryService):
                    await asyncio.wait_for(service.ready.wait(), 10)
            yield address, received, topics
    finally:
        await app.stop()


async def test_callback_delivery_to_async_and_sync_handlers(world: tuple[str, Received, dict[str, str]]) -> None:
    address, received, topics = world
    async with AsyncClient(address) as client:
        await client.publish_event(PUBSUB, topics["async"], {"order": 1})
        tag, event = await received.get()
        assert tag == "async" and event.json() == {"order": 1} and event.topic == topics["async"]
        assert event.pubsub_name == PUBSUB and event.data_content_type == "application/json" and event.id
        await client.publish_event(PUBSUB, topics["sync"], "plain text")
        tag, event = await received.get()
        assert (tag, event.text(), event.data_content_type) == ("sync", "plain text", "text/plain")


async def test_a_failing_handler_gets_the_event_again(world: tuple[str, Received, dict[str, str]]) -> None:
    address, received, topics = world
    async with AsyncClient(address) as client:
        await client.publish_event(PUBSUB, topics["flaky"], b"\x00\x01")
    tag1, first = await received.get()
    tag2, second = await received.get()
    assert (tag1, tag2) == ("flaky-1", "flaky-2")
    assert first.id == second.id and second.data == b"\x00\x01"


async def test_invoke_service_reaches_the_app_method(world: tuple[str, Received, dict[str, str]]) -> None:
    address, _, _ = world
    async with AsyncClient(address) as client:
        reply = await client.invoke_service("sdk-app", "greet", "bob")
        assert (reply.text(), reply.content_type) == ("hello bob via POST", "text/plain")
        reply = await client.invoke_service("sdk-app", "greet", verb="GET")
        assert reply.text() == "hello  via GET"


async def test_streaming_subscription_ack_and_retry(world: tuple[str, Received, dict[str, str]]) -> None:
    address, _, _ = world
    topic = _name()
    async with AsyncClient(address) as client, client.subscribe(PUBSUB, topic) as sub:
        await client.publish_event(PUBSUB, topic, {"n": 1})
        first = await asyncio.wait_for(anext(sub), 10)
        assert first.json() == {"n": 1} and first.topic == topic
        await sub.retry(first)
        again = await asyncio.wait_for(anext(sub), 10)
        assert again.id == first.id
        await sub.success(again)
        await client.publish_event(PUBSUB, topic, "second")
        second = await asyncio.wait_for(anext(sub), 10)
        assert second.text() == "second" and second.id != first.id
        await sub.success(second)


async def test_subscription_and_publish_errors(world: tuple[str, Received, dict[str, str]]) -> None:
    address, _, _ = world
    async with AsyncClient(address) as client:
        with pytest.raises(LayottoError) as info:
            await client.subscribe("nope", "t").start()
        assert (info.value.code, info.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, "pubsub nope not found")
        with pytest.raises(LayottoError) as info:
            await client.publish_event(PUBSUB, "", b"x")
        assert info.value.message == f"topic is empty in pubsub {PUBSUB}"
        with pytest.raises(LayottoError) as info:
            await client.publish_event("", "t", b"x")
        assert info.value.message == "pubsub name is empty"


def _sync_stream(address: str, topic: str) -> list[Any]:
    with Client(address) as client, client.subscribe(PUBSUB, topic) as sub:
        client.publish_event(PUBSUB, topic, {"k": "v"})
        client.publish_event(PUBSUB, topic, {"k": "w"}, content_type="application/json")
        got = []
        for event in sub:
            got.append(event.json())
            sub.success(event)
            if len(got) == 2:
                break
        with pytest.raises(LayottoError) as info:
            client.subscribe("nope", topic).start()
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        return got


async def test_sync_streaming_subscription(world: tuple[str, Received, dict[str, str]]) -> None:
    address, _, _ = world
    assert await asyncio.to_thread(_sync_stream, address, _name()) == [{"k": "v"}, {"k": "w"}]
