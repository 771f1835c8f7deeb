"""Events reach apps the way daprd delivers them: HTTP apps (`GET /dapr/subscribe`, events
POSTed to their route, the app's `{"status"}` and HTTP code as the verdict), routing rules,
dead letters for DROP, declared `Subscription` resources, and a gRPC app whose callback API
(Layotto's or Dapr's) is found by asking."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from layotto.config import dapr_yaml, layotto_json
from layotto.runtime.delivery import DeliveryService
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.httpapp import http_server
from tests.support.sidecar import free_port, layotto_config

PUBSUB = "mem"


class HttpApp:
    """A Dapr HTTP app: its subscriptions, and every event POSTed to it by route. The data
    says how to answer: `drop`, `retry`, `404`, `500`, `empty` (200, no body), else SUCCESS."""

    def __init__(self, subscriptions: list[dict[str, Any]]) -> None:
        self.subscriptions = subscriptions
        self.events: asyncio.Queue[tuple[str, dict[str, Any], dict[str, str]]] = asyncio.Queue()
        self.calls: dict[str, int] = {}

    async def subscribe(self, request: web.Request) -> web.Response:
        return web.json_response(self.subscriptions)

    async def event(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.events.put_nowait((request.path, body, dict(request.headers)))
        data = body.get("data")
        if body.get("data_base64") is not None:
            data = base64.b64decode(body["data_base64"]).decode()
        self.calls[str(data)] = self.calls.get(str(data), 0) + 1
        if request.path == "/dead-letters":
            return web.json_response({"status": "SUCCESS"})
        answers = {
            "drop": web.json_response({"status": "DROP"}),
            "retry": web.json_response({"status": "RETRY"}),
            "404": web.Response(status=404, text="no such handler"),
            "500": web.Response(status=500, text="boom"),
            "empty": web.Response(status=200),
            "weird": web.json_response({"status": "MAYBE"}),
        }
        return answers.get(str(data), web.json_response({"status": "SUCCESS"}))

    async def next_event(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        return await asyncio.wait_for(self.events.get(), 10)


@contextlib.asynccontextmanager
async def serving(app: HttpApp) -> AsyncIterator[int]:
    routes = web.Application()
    routes.router.add_get("/dapr/subscribe", app.subscribe)
    routes.router.add_post("/{tail:.*}", app.event)
    async with http_server(routes) as port:
        yield port


@contextlib.asynccontextmanager
async def sidecar_for(app: dict[str, Any], resources: Path | None = None) -> AsyncIterator[tuple[Sidecar, Any]]:
    grpc_config = {"app": {"app_id": "subs-app", **app}, "pub_subs": {PUBSUB: {"type": "in-memory"}}}
    port = free_port()
    cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=port), source="<test>")
    if resources is not None:
        dapr_yaml.load_into(cfg, str(resources))
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
        await asyncio.wait_for(delivery.ready.wait(), 10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield sidecar, runtime_pb2_grpc.RuntimeStub(channel)
    finally:
        await sidecar.stop()


async def _publish(stub: Any, topic: str, data: bytes, content_type: str = "", **metadata: str) -> None:
    request = pb.PublishEventRequest(
        pubsub_name=PUBSUB, topic=topic, data=data, data_content_type=content_type, metadata=metadata
    )
    await stub.PublishEvent(request)


def _delivery(sidecar: Sidecar) -> DeliveryService:
    return next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))


async def test_an_http_app_gets_cloudevents_on_its_routes_and_its_answers_count() -> None:
    topic, dead = f"orders-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    app = HttpApp(
        [
            # v1: one route, a dead-letter topic; the metadata makes retries quick.
            {
                "pubsubname": PUBSUB,
                "topic": topic,
                "route": "/orders",
                "deadLetterTopic": dead,
                "metadata": {"maxRetries": "0", "maxDeliveryAttempts": "2", "retryBackoff": "0.01"},
            },
            {"pubsubName": PUBSUB, "topic": dead, "route": "dead-letters"},
        ]
    )
    async with serving(app) as port, sidecar_for({"http_port": port}) as (sidecar, stub):
        await _publish(stub, topic, b'"hello"', "application/json")
        path, body, headers = await app.next_event()
        assert path == "/orders" and body["data"] == "hello" and body["topic"] == topic
        assert headers["Content-Type"] == "application/cloudevents+json"
        assert body["specversion"] == "1.0" and body["pubsubname"] == PUBSUB

        # DROP with a dead-letter topic: published there, as daprd does.
        await _publish(stub, topic, b"drop", "text/plain")
        assert (await app.next_event())[0] == "/orders"
        path, body, _ = await app.next_event()
        assert (path, body["data"]) == ("/dead-letters", "drop")

        # 404: dropped without a dead letter (the app has no handler); an empty 200 is a success.
        await _publish(stub, topic, b"404", "text/plain")
        assert (await app.next_event())[1]["data"] == "404"
        await _publish(stub, topic, b"empty", "text/plain")
        assert (await app.next_event())[1]["data"] == "empty"

        # 500 and an unknown status are retried; after maxDeliveryAttempts, dead-lettered.
        await _publish(stub, topic, b"500", "text/plain")
        for _ in range(2):
            assert (await app.next_event())[1]["data"] == "500"
        path, body, _ = await app.next_event()
        assert (path, body["data"]) == ("/dead-letters", "500")
        stats = _delivery(sidecar).stats
        # The first 500 is nacked (no local retries) and redelivered by the backend.
        assert (stats.dead_lettered, stats.dropped, stats.nacked) == (2, 1, 1)
        assert app.calls["404"] == 1 and app.calls["drop"] == 2  # once on the topic, once dead-lettered


async def test_with_a_dead_letter_topic_the_first_failed_delivery_moves_the_event_as_daprd_does() -> None:
    topic, dead = f"once-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    app = HttpApp(
        [
            {"pubsubname": PUBSUB, "topic": topic, "route": "/orders", "deadLetterTopic": dead},
            {"pubsubname": PUBSUB, "topic": dead, "route": "dead-letters"},
        ]
    )
    async with serving(app) as port, sidecar_for({"http_port": port}) as (sidecar, stub):
        await _publish(stub, topic, b"retry", "text/plain")
        assert (await app.next_event())[0] == "/orders"
        path, body, _ = await app.next_event()
        assert (path, body["data"]) == ("/dead-letters", "retry")
        # One delivery, no local retries, no redelivery: straight to the dead-letter topic.
        assert app.calls["retry"] == 2  # once on the topic, once dead-lettered
        stats = _delivery(sidecar).stats
        assert (stats.retried, stats.dead_lettered, stats.nacked) == (1, 1, 0)


async def test_routing_rules_pick_the_handler_and_raw_payloads_arrive_wrapped() -> None:
    topic, raw_topic = f"rules-{uuid.uuid4().hex[:6]}", f"raw-{uuid.uuid4().hex[:6]}"
    app = HttpApp(
        [
            {
                "pubsubname": PUBSUB,
                "topic": topic,
                "routes": {
                    "rules": [
                        {"match": 'event.type == "widget"', "path": "/widgets"},
                        {"match": 'event.type == "gadget" && event.source == "shop"', "path": "/gadgets"},
                        {"match": "event.data.size > 5", "path": "/never"},  # not evaluable: never matches
                    ],
                    "default": "/others",
                },
            },
            {"pubsubname": PUBSUB, "topic": raw_topic, "route": "/raw", "metadata": {"rawPayload": "true"}},
        ]
    )
    async with serving(app) as port, sidecar_for({"http_port": port}) as (_, stub):
        routed = (("widget", "x", "/widgets"), ("gadget", "shop", "/gadgets"), ("gadget", "elsewhere", "/others"))
        for event_type, source, expected in routed:
            event = {"id": uuid.uuid4().hex, "source": source, "type": event_type, "specversion": "1.0", "data": 1}
            await _publish(stub, topic, json.dumps(event).encode(), "application/cloudevents+json")
            path, body, _ = await app.next_event()
            assert (body["type"], path) == (event_type, expected)

        await _publish(stub, raw_topic, b"\x00raw bytes", rawPayload="true")
        path, body, _ = await app.next_event()
        assert path == "/raw" and base64.b64decode(body["data_base64"]) == b"\x00raw bytes"
        assert body["datacontenttype"] == "application/octet-stream"


async def test_declared_subscriptions_add_topics_the_app_does_not_subscribe_to_itself(tmp_path: Path) -> None:
    mine, declared = f"mine-{uuid.uuid4().hex[:6]}", f"declared-{uuid.uuid4().hex[:6]}"
    (tmp_path / "subscriptions.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v2alpha1
            kind: Subscription
            metadata:
              name: declared
            spec:
              pubsubname: {PUBSUB}
              topic: {declared}
              routes:
                rules:
                  - match: event.type == "special"
                    path: /special
                default: /declared
            scopes: [subs-app]
            ---
            apiVersion: dapr.io/v1alpha1
            kind: Subscription
            metadata:
              name: shadowed
            spec:
              pubsubname: {PUBSUB}
              topic: {mine}
              route: /from-the-resource
            ---
            apiVersion: dapr.io/v1alpha1
            kind: Subscription
            metadata:
              name: not-for-us
            spec:
              pubsubname: {PUBSUB}
              topic: {declared}-other
              route: /other
            scopes: [another-app]
            """
        )
    )
    app = HttpApp([{"pubsubname": PUBSUB, "topic": mine, "route": "/mine"}])
    async with serving(app) as port, sidecar_for({"http_port": port}, tmp_path) as (sidecar, stub):
        topics = sorted(s.topic for s, _, _ in _delivery(sidecar).subscriptions)
        assert topics == sorted([mine, declared])
        await _publish(stub, mine, b'"a"', "application/json")
        assert (await app.next_event())[0] == "/mine"  # the app's own subscription wins
        await _publish(stub, declared, b'"b"', "application/json")
        assert (await app.next_event())[0] == "/declared"
        special = {"id": "s1", "source": "t", "type": "special", "specversion": "1.0", "data": "c"}
        await _publish(stub, declared, json.dumps(special).encode(), "application/cloudevents+json")
        assert (await app.next_event())[0] == "/special"


async def test_a_dapr_grpc_app_behind_a_layotto_config_is_found_by_asking() -> None:
    from dapr.proto.common.v1 import common_pb2
    from dapr.proto.runtime.v1 import appcallback_pb2 as dcb
    from dapr.proto.runtime.v1 import appcallback_pb2_grpc as dcb_grpc

    topic = f"dapr-{uuid.uuid4().hex[:6]}"
    received: asyncio.Queue[Any] = asyncio.Queue()

    class DaprApp(dcb_grpc.AppCallbackServicer):  # type: ignore[misc]
        async def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
            return dcb.ListTopicSubscriptionsResponse(
                subscriptions=[
                    dcb.TopicSubscription(pubsub_name=PUBSUB, topic=topic, routes=dcb.TopicRoutes(default="/in"))
                ]
            )

        async def OnTopicEvent(self, request: Any, context: Any) -> Any:
            received.put_nowait(request)
            return dcb.TopicEventResponse(status=dcb.TopicEventResponse.SUCCESS)

        async def OnInvoke(self, request: Any, context: Any) -> Any:
            return common_pb2.InvokeResponse(data=request.data, content_type="text/plain")

    server = grpc.aio.server()
    dcb_grpc.add_AppCallbackServicer_to_server(DaprApp(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with sidecar_for({"grpc_callback_port": port}) as (_, stub):
            await _publish(stub, topic, b"hi", "text/plain")
            event = await asyncio.wait_for(received.get(), 10)
            assert (event.data, event.path) == (b"hi", "/in")
            from google.protobuf import any_pb2

            reply = await stub.InvokeService(
                pb.InvokeServiceRequest(
                    id="subs-app", message=pb.CommonInvokeRequest(method="echo", data=any_pb2.Any(value=b"ping"))
                )
            )
            assert reply.data.value == b"ping"
    finally:
        await server.stop(None)
