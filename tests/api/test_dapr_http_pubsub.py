"""Dapr's HTTP publish endpoints (daprd's /v1.0/publish, /v1.0-alpha1/publish/bulk) on the
in-memory pub/sub: the envelope on the wire (daprd's, as Dapr's gRPC API publishes it) and
daprd's error codes and messages."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from layotto.components.pubsub.base import Message, PubSub
from tests.api.conftest import APP_ID, PUBSUB, DaprHttp


class Tap:
    """A consumer group of its own on the in-memory component, behind the API's back."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.received: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, message: Message) -> bool:
        await self.received.put(message)
        return True

    async def next(self) -> Message:
        return await asyncio.wait_for(self.received.get(), 5)

    async def envelope(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((await self.next()).data)
        assert len(doc.pop("id")) == 36
        return doc


@pytest.fixture
async def tap(dapr_http: DaprHttp) -> AsyncIterator[Tap]:
    component = dapr_http.sidecar.rt.get("pubsub", PUBSUB)
    assert isinstance(component, PubSub)
    tap = Tap(f"http-{uuid.uuid4().hex[:12]}")
    subscription = await component.subscribe(tap.topic, tap, {"consumerID": f"tap-{tap.topic}"})
    try:
        yield tap
    finally:
        await subscription.close()


def common(topic: str, content_type: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "source": APP_ID,
        "type": "com.dapr.event.sent",
        "topic": topic,
        "pubsubname": PUBSUB,
        "traceid": "",
        "datacontenttype": content_type,
    }


async def test_publish_wraps_the_body_in_daprds_cloudevent(dapr_http: DaprHttp, tap: Tap) -> None:
    path = f"/v1.0/publish/{PUBSUB}/{tap.topic}"
    text = await dapr_http("POST", path, data="hello", headers={"Content-Type": "text/plain"})
    assert (text.status, text.body) == (204, b"")
    await dapr_http(
        "PUT",
        path,
        data='{"n": 1}',
        headers={"Content-Type": "application/json"},
        params=[("metadata.ttlInSeconds", "60")],
    )
    await dapr_http("POST", path, data="as is", params=[("metadata.rawPayload", "true")])
    assert await tap.envelope() == {**common(tap.topic, "text/plain"), "data": "hello"}
    with_ttl = await tap.envelope()
    assert with_ttl.pop("expiration").endswith("Z")
    assert with_ttl == {**common(tap.topic, "application/json"), "data": {"n": 1}}
    assert (await tap.next()).data == b"as is"


async def test_a_cloudevent_body_is_kept_and_a_bad_ttl_ignored(dapr_http: DaprHttp, tap: Tap) -> None:
    event = {"specversion": "1.0", "id": "e-1", "source": "mine", "type": "t", "data": {"x": 1}}
    reply = await dapr_http(
        "POST",
        f"/v1.0/publish/{PUBSUB}/{tap.topic}",
        data=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"},
        params=[("metadata.ttlInSeconds", "soon")],
    )
    assert reply.status == 204
    received = json.loads((await tap.next()).data)
    assert (received["id"], received["source"], received["data"]) == ("e-1", "mine", {"x": 1})
    assert "expiration" not in received
    bad = await dapr_http(
        "POST",
        f"/v1.0/publish/{PUBSUB}/{tap.topic}",
        data="{",
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert bad.error == (500, "ERR_PUBSUB_CLOUD_EVENTS_SER", "cannot create cloudevent")


async def test_topic_may_hold_slashes(dapr_http: DaprHttp) -> None:
    component = dapr_http.sidecar.rt.get("pubsub", PUBSUB)
    assert isinstance(component, PubSub)
    tap = Tap(f"orders/{uuid.uuid4().hex[:8]}/eu")
    subscription = await component.subscribe(tap.topic, tap, {"consumerID": "tap-slash"})
    try:
        assert (await dapr_http("POST", f"/v1.0/publish/{PUBSUB}/{tap.topic}", data="x")).status == 204
        assert (await tap.envelope())["topic"] == tap.topic
    finally:
        await subscription.close()


async def test_publish_refusals(dapr_http: DaprHttp, dapr_http_empty: DaprHttp) -> None:
    unknown = await dapr_http("POST", "/v1.0/publish/nope/t", data="x")
    assert unknown.error == (404, "ERR_PUBSUB_NOT_FOUND", "pubsub nope is not found")
    # With no pubsub at all, daprd says "not found" too.
    none = await dapr_http_empty("POST", "/v1.0/publish/nope/t", data="x")
    assert none.error == (404, "ERR_PUBSUB_NOT_FOUND", "pubsub nope is not found")
    bulk = await dapr_http_empty("POST", "/v1.0-alpha1/publish/bulk/nope/t", json_body=[])
    assert bulk.error == (404, "ERR_PUBSUB_NOT_FOUND", "pubsub nope is not found")


async def test_bulk_publish(dapr_http: DaprHttp, tap: Tap) -> None:
    entries = [
        {"entryId": "1", "event": {"b": 2, "a": 1}, "contentType": "application/json"},
        {"entryId": "2", "event": "plain", "contentType": "text/plain", "metadata": {"rawPayload": "true"}},
        {"entryId": "3", "event": base64.b64encode(b"\x00\x01").decode(), "contentType": "application/octet-stream"},
    ]
    for version in ("v1.0-alpha1", "v1.0"):
        reply = await dapr_http("POST", f"/{version}/publish/bulk/{PUBSUB}/{tap.topic}", json_body=entries)
        assert (reply.status, reply.body) == (204, b"")
        first = await tap.envelope()
        assert first == {**common(tap.topic, "application/json"), "data": {"a": 1, "b": 2}}
        assert (await tap.next()).data == b"plain"
        third = await tap.envelope()
        assert third["data_base64"] == base64.b64encode(b"\x00\x01").decode()


async def test_bulk_publish_refusals(dapr_http: DaprHttp) -> None:
    path = f"/v1.0-alpha1/publish/bulk/{PUBSUB}/t"
    repeated = await dapr_http(
        "POST",
        path,
        json_body=[
            {"entryId": "1", "event": "a", "contentType": "text/plain"},
            {"entryId": "1", "event": "b", "contentType": "text/plain"},
        ],
    )
    assert repeated.error == (
        400,
        "ERR_PUBSUB_EVENTS_SER",
        f"error marshaling events to bytes for topic t pubsub {PUBSUB}. error: "
        "entryId is duplicated or not present for entry",
    )
    mismatch = await dapr_http("POST", path, json_body=[{"entryId": "1", "event": 5, "contentType": "text/plain"}])
    assert mismatch.error == (
        400,
        "ERR_PUBSUB_EVENTS_SER",
        f"error when marshalling cloud event envelope for topic t pubsub {PUBSUB}: "
        "error: mismatch between contentType and event",
    )
    unreadable = await dapr_http("POST", path, json_body={"entryId": "1"})
    status, code, message = unreadable.error
    assert (status, code) == (400, "ERR_PUBSUB_EVENTS_SER")
    assert message.startswith(f"error when unmarshaling the request for topic t pubsub {PUBSUB}: ")


async def test_bulk_publish_lists_the_failed_entries(dapr_http: DaprHttp) -> None:
    reply = await dapr_http(
        "POST",
        f"/v1.0-alpha1/publish/bulk/{PUBSUB}/t",
        json_body=[
            {"entryId": "ok", "event": "fine", "contentType": "text/plain"},
            {"entryId": "bad", "event": "{", "contentType": "application/cloudevents+json"},
        ],
    )
    assert reply.status == 500
    assert reply.json() == {
        "failedEntries": [{"entryId": "bad", "error": "cannot create cloudevent"}],
        "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
    }
