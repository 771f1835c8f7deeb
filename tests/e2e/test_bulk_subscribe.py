"""Bulk subscribe end to end, as daprd delivers it: a Dapr gRPC app gets TopicEventBulkRequests
(OnBulkTopicEvent, else AppCallbackAlpha's OnBulkTopicEventAlpha1) and an HTTP app Dapr's bulk
body POSTed to its route; each entry's status decides its fate as one-by-one delivery does
(RETRY and a missing status: only that entry is sent again; DROP: to the dead-letter topic;
404 / UNIMPLEMENTED: dropped). Subscriptions come from the app (ListTopicSubscriptions'
`bulk_subscribe`, `/dapr/subscribe`'s `bulkSubscribe`) or from Subscription resources
(v1alpha1 and v2alpha1); a Layotto app, whose callback API has no bulk call, gets a declared
bulk subscription's batches one event at a time."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from layotto.config import dapr_yaml, layotto_json
from layotto.runtime.delivery import BulkDispatcher, DeliveryService
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import DROP, RETRY, SUCCESS, BulkCallbackApp, CallbackApp, running_app
from tests.contract.pubsub.backends import BY_NAME
from tests.contract.pubsub.harness import PUBSUB, cleanup_after, grpc_config, new_topic
from tests.support.httpapp import http_server
from tests.support.sidecar import free_port, layotto_config, running_sidecar

BULK_TYPE = "com.dapr.event.sent.bulk"


def _delivery(sidecar: Sidecar) -> DeliveryService:
    return next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))


async def _publish(stub: Any, topic: str, data: bytes, content_type: str = "text/plain", **metadata: str) -> None:
    request = pb.PublishEventRequest(
        pubsub_name=PUBSUB, topic=topic, data=data, data_content_type=content_type, metadata=metadata
    )
    await stub.PublishEvent(request)


class Answers:
    """The app's answers by payload: `retry-once` is RETRY the first time, `drop` is DROP on
    `topic` (its dead-letter topic takes it)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.seen: Counter[bytes] = Counter()

    def __call__(self, event: cb.TopicEventRequest) -> int:
        self.seen[event.data] += 1
        if event.data == b"drop" and event.topic == self.topic:
            return DROP
        if event.data == b"retry-once" and self.seen[event.data] == 1:
            return RETRY
        return SUCCESS


async def test_a_dapr_grpc_app_gets_batches_and_answers_each_entry() -> None:
    backend = BY_NAME["redis"]  # native batched reads: XREADGROUP COUNT n, one XACK
    backend.require()
    topic, dead, app_id = new_topic(), new_topic(), f"bulk-{uuid.uuid4().hex[:8]}"
    answers = Answers(topic)
    # Only the Alpha callback: the sidecar falls back to it, as daprd does. Three attempts
    # before a failed event is dead-lettered (daprd's default moves it after the first).
    app = BulkCallbackApp(
        [(PUBSUB, topic, {"retryBackoff": "0.01", "maxDeliveryAttempts": "3"}), (PUBSUB, dead, {})],
        answers,
        bulk=(10, 300),
        alpha_only=True,
        dead_letter_topics={topic: dead},
    )
    async with (
        cleanup_after(backend, [topic, dead], [app_id]),
        running_app(app),
        running_sidecar(grpc_config(backend, app_id, app.port)) as (sidecar, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        delivery = _delivery(sidecar)
        await asyncio.wait_for(delivery.ready.wait(), 10)
        assert all(isinstance(d, BulkDispatcher) for _, _, d in delivery.subscriptions)
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await _publish(stub, topic, b'{"n": 0}', "application/json")
        for i in range(1, 20):
            await _publish(stub, topic, b"e%d" % i)
        await _publish(stub, topic, b"retry-once")
        await _publish(stub, topic, b"drop")
        await _publish(stub, topic, b"\x00raw", rawPayload="true")
        await app.wait_for(lambda: answers.seen[b"retry-once"] == 2 and any(r.topic == dead for r in app.requests))

        on_topic = [r for r in app.requests if r.topic == topic]
        sizes = [len(r.entries) for r in on_topic]
        assert max(sizes) <= 10 and max(sizes) > 1, sizes
        first = on_topic[0]
        assert (first.type, first.pubsub_name, dict(first.metadata)) == (BULK_TYPE, PUBSUB, {"pubsubName": PUBSUB})
        assert len({e.entry_id for r in on_topic for e in r.entries}) == sum(sizes)  # one id per entry and try
        entry = first.entries[0]
        assert entry.content_type == "application/cloudevents+json"
        ce = entry.cloud_event
        assert (json.loads(ce.data), ce.data_content_type, ce.type, ce.source) == (
            {"n": 0},
            "application/json",
            "com.runtime.event.sent",
            "runtime",
        )
        assert ce.extensions["topic"] == topic and ce.extensions["pubsubname"] == PUBSUB
        raw = next(e for r in on_topic for e in r.entries if e.WhichOneof("event") == "bytes")
        assert (raw.bytes, raw.content_type) == (b"\x00raw", "application/octet-stream")

        # RETRY: the entry alone went again (a local retry), the rest of its batch was taken.
        retried = [r for r in on_topic if any(e.cloud_event.data == b"retry-once" for e in r.entries)]
        assert len(retried) == 2 and len(retried[1].entries) == 1
        # DROP with a dead-letter topic: the event went there, once.
        dead_requests = [r for r in app.requests if r.topic == dead]
        assert [e.cloud_event.data for r in dead_requests for e in r.entries] == [b"drop"]
        expected = {b"e%d" % i for i in range(1, 20)} | {b"retry-once", b'{"n":0}', b"\x00raw"}
        assert set(app.succeeded) == expected | {b"drop"}  # `drop` succeeded on the dead-letter topic
        assert all(n == 1 for n in app.succeeded.values()), app.succeeded
        stats = delivery.stats
        assert (stats.retried, stats.dead_lettered, stats.nacked) == (1, 1, 0)


class BulkHttpApp:
    """A Dapr HTTP app taking bulk bodies on /bulk (and one event at a time on /dead). Its
    answer per entry, by the event's data: `retry-once` RETRY the first time, `unanswered` left
    out of the statuses the first time, `drop` DROP; the others SUCCESS."""

    def __init__(self, subscriptions: list[dict[str, Any]]) -> None:
        self.subscriptions = subscriptions
        self.bodies: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.dead: list[dict[str, Any]] = []
        self.seen: Counter[str] = Counter()
        self.changed = asyncio.Condition()

    async def subscribe(self, request: web.Request) -> web.Response:
        return web.json_response(self.subscriptions)

    async def bulk(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append((request.path, body, dict(request.headers)))
        statuses = []
        for entry in body["entries"]:
            event = entry["event"]
            data = event["data"] if isinstance(event, dict) else base64.b64decode(event).decode()
            self.seen[data] += 1
            if data == "unanswered" and self.seen[data] == 1:
                continue
            status = {"drop": "DROP", "retry-once": "RETRY" if self.seen[data] == 1 else "SUCCESS"}.get(data, "SUCCESS")
            statuses.append({"entryId": entry["entryId"], "status": status})
        async with self.changed:
            self.changed.notify_all()
        return web.json_response({"statuses": statuses})

    async def dead_letter(self, request: web.Request) -> web.Response:
        self.dead.append(await request.json())
        async with self.changed:
            self.changed.notify_all()
        return web.json_response({"status": "SUCCESS"})

    async def wait_for(self, done: Any) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(done), 10)


@contextlib.asynccontextmanager
async def serving(app: BulkHttpApp) -> AsyncIterator[int]:
    routes = web.Application()
    routes.router.add_get("/dapr/subscribe", app.subscribe)
    routes.router.add_post("/dead", app.dead_letter)
    routes.router.add_post("/{tail:.*}", app.bulk)
    async with http_server(routes) as port:
        yield port


@contextlib.asynccontextmanager
async def sidecar_for(port: int, resources: Path | None = None) -> AsyncIterator[tuple[Sidecar, Any]]:
    # In-memory: a component without batched reads, so the generic batcher serves it.
    grpc_config = {"app": {"app_id": "bulk-app", "http_port": port}, "pub_subs": {PUBSUB: {"type": "in-memory"}}}
    grpc_port = free_port()
    cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=grpc_port), source="<test>")
    if resources is not None:
        dapr_yaml.load_into(cfg, str(resources))
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        await asyncio.wait_for(_delivery(sidecar).ready.wait(), 10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            yield sidecar, runtime_pb2_grpc.RuntimeStub(channel)
    finally:
        await sidecar.stop()


async def test_an_http_app_gets_daprs_bulk_body_and_answers_each_entry() -> None:
    topic, dead = new_topic(), new_topic()
    settings = {"enabled": True, "maxMessagesCount": 8, "maxAwaitDurationMs": 300}
    app = BulkHttpApp(
        [
            {
                "pubsubname": PUBSUB,
                "topic": topic,
                "route": "/bulk",
                "deadLetterTopic": dead,
                "metadata": {"retryBackoff": "0.01", "maxDeliveryAttempts": "3"},
                "bulkSubscribe": settings,
            },
            {"pubsubname": PUBSUB, "topic": dead, "route": "/dead"},
        ]
    )
    async with serving(app) as port, sidecar_for(port) as (sidecar, stub):
        await _publish(stub, topic, b'"hello"', "application/json")
        for i in range(12):
            await _publish(stub, topic, b"e%d" % i)
        for data in (b"retry-once", b"unanswered", b"drop"):
            await _publish(stub, topic, data)
        await app.wait_for(lambda: app.seen["retry-once"] == 2 and app.seen["unanswered"] == 2 and app.dead)

        path, body, headers = app.bodies[0]
        assert path == "/bulk" and headers["Content-Type"] == "application/json"
        assert (body["type"], body["topic"], body["pubsubname"]) == (BULK_TYPE, topic, PUBSUB)
        assert body["metadata"] == {"pubsubName": PUBSUB} and len(body["id"]) == 36
        entry = body["entries"][0]
        assert entry["contentType"] == "application/cloudevents+json" and entry["metadata"] == {}
        event = entry["event"]
        assert (event["data"], event["topic"], event["specversion"]) == ("hello", topic, "1.0")
        sizes = [len(b["entries"]) for _, b, _ in app.bodies]
        assert max(sizes) <= 8 and max(sizes) > 1, sizes
        # RETRY and an unanswered entry: only those went again, in one body of their own.
        again = [b for _, b, _ in app.bodies if {e["event"]["data"] for e in b["entries"]} & {"unanswered"}]
        assert len(again) == 2 and {e["event"]["data"] for e in again[1]["entries"]} == {"retry-once", "unanswered"}
        # DROP: to the dead-letter topic.
        assert [d["data"] for d in app.dead] == ["drop"]
        assert all(n == 1 for k, n in app.seen.items() if k not in ("retry-once", "unanswered")), app.seen
        stats = _delivery(sidecar).stats
        assert (stats.retried, stats.dead_lettered, stats.nacked) == (2, 1, 0)


async def test_a_bulk_route_the_http_app_lacks_drops_the_batch() -> None:
    topic = new_topic()
    app = BulkHttpApp(
        [{"pubsubname": PUBSUB, "topic": topic, "route": "/dead/nowhere", "bulkSubscribe": {"enabled": True}}]
    )
    routes = web.Application()
    routes.router.add_get("/dapr/subscribe", app.subscribe)
    async with http_server(routes) as port, sidecar_for(port) as (sidecar, stub):
        for i in range(3):
            await _publish(stub, topic, b"x%d" % i)
        stats = _delivery(sidecar).stats
        deadline = asyncio.get_running_loop().time() + 10
        while stats.dropped < 3:  # the default window is 1 s: the batch goes then
            assert asyncio.get_running_loop().time() < deadline, stats
            await asyncio.sleep(0.05)
        assert (stats.dropped, stats.dead_lettered, stats.retried) == (3, 0, 0)


async def test_declared_bulk_subscriptions_of_both_versions(tmp_path: Path) -> None:
    v1, v2 = new_topic(), new_topic()
    (tmp_path / "subscriptions.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v1alpha1
            kind: Subscription
            metadata:
              name: bulk-v1
            spec:
              pubsubname: {PUBSUB}
              topic: {v1}
              route: /v1
              bulkSubscribe:
                enabled: true
                maxMessagesCount: 3
                maxAwaitDurationMs: 200
            ---
            apiVersion: dapr.io/v2alpha1
            kind: Subscription
            metadata:
              name: bulk-v2
            spec:
              pubsubname: {PUBSUB}
              topic: {v2}
              routes:
                default: /v2
              bulkSubscribe:
                enabled: true
                maxMessagesCount: 5
                maxAwaitDurationMs: 200
            """
        )
    )
    app = BulkHttpApp([])
    async with serving(app) as port, sidecar_for(port, tmp_path) as (sidecar, stub):
        options = {s.topic: d.options for s, _, d in _delivery(sidecar).subscriptions if isinstance(d, BulkDispatcher)}
        assert (options[v1].max_messages, options[v2].max_messages, options[v1].max_await) == (3, 5, 0.2)
        for i in range(7):
            await _publish(stub, v1, b"a%d" % i)
            await _publish(stub, v2, b"b%d" % i)
        await app.wait_for(lambda: sum(app.seen.values()) == 14)
        by_route: dict[str, list[int]] = {}
        for path, body, _ in app.bodies:
            by_route.setdefault(path, []).append(len(body["entries"]))
        assert max(by_route["/v1"]) == 3 and sum(by_route["/v1"]) == 7
        assert max(by_route["/v2"]) == 5 and sum(by_route["/v2"]) == 7


@contextlib.asynccontextmanager
async def grpc_sidecar(callback_port: int, resources: Path | None = None) -> AsyncIterator[tuple[Sidecar, Any]]:
    grpc_config = {
        "app": {"app_id": "bulk-app", "grpc_callback_port": callback_port},
        "pub_subs": {PUBSUB: {"type": "in-memory"}},
    }
    grpc_port = free_port()
    cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=grpc_port), source="<test>")
    if resources is not None:
        dapr_yaml.load_into(cfg, str(resources))
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        await asyncio.wait_for(_delivery(sidecar).ready.wait(), 10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            yield sidecar, runtime_pb2_grpc.RuntimeStub(channel)
    finally:
        await sidecar.stop()


async def test_a_dapr_app_without_a_bulk_callback_has_its_batch_dropped() -> None:
    topic = new_topic()

    class NoBulk(BulkCallbackApp):
        async def OnBulkTopicEvent(self, request: Any, context: Any) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no bulk here")

        async def OnBulkTopicEventAlpha1(self, request: Any, context: Any) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no bulk here")

    app = NoBulk([(PUBSUB, topic, {})], bulk=(5, 50), dead_letter_topics={topic: new_topic()})
    async with running_app(app), grpc_sidecar(app.port) as (sidecar, stub):
        for i in range(3):
            await _publish(stub, topic, b"x%d" % i)
        stats = _delivery(sidecar).stats
        deadline = asyncio.get_running_loop().time() + 10
        while stats.dropped < 3:
            assert asyncio.get_running_loop().time() < deadline, stats
            await asyncio.sleep(0.02)
        # Dropped as UNIMPLEMENTED drops one event: never dead-lettered, never retried.
        assert (stats.dropped, stats.dead_lettered, stats.retried) == (3, 0, 0)


async def test_a_layotto_app_with_a_declared_bulk_subscription_gets_the_batch_one_by_one(tmp_path: Path) -> None:
    topic = new_topic()
    (tmp_path / "bulk.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v2alpha1
            kind: Subscription
            metadata:
              name: bulk
            spec:
              pubsubname: {PUBSUB}
              topic: {topic}
              routes:
                default: /ignored-by-layottos-callback
              bulkSubscribe:
                enabled: true
                maxMessagesCount: 4
                maxAwaitDurationMs: 100
            """
        )
    )
    answers = Answers(topic)
    app = CallbackApp([], answers)  # Layotto's AppCallback: no bulk callback
    async with running_app(app), grpc_sidecar(app.port, tmp_path) as (sidecar, stub):
        (dispatcher,) = [d for _, _, d in _delivery(sidecar).subscriptions]
        assert isinstance(dispatcher, BulkDispatcher)
        for i in range(6):
            await _publish(stub, topic, b"e%d" % i)
        await _publish(stub, topic, b"retry-once")
        await app.wait_for(lambda: len(app.succeeded) == 7)
        assert all(n == 1 for n in app.succeeded.values()) and answers.seen[b"retry-once"] == 2
