"""PublishEvent (and Dapr's BulkPublishEvent) on the in-memory pub/sub: the envelope each API
puts on the wire, and the exact code and message of every refusal as each API gives it today."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from layotto.components.pubsub.base import Message, PubSub
from layotto.sidecar import Sidecar
from tests.api.clients import DAPR, LAYOTTO, Api, DaprApi, dpubsub, failure
from tests.api.conftest import APP_ID, PUBSUB

C = grpc.StatusCode
#: Python's json error for b"{", which both APIs pass on.
NOT_JSON = "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"


def new_topic() -> str:
    return f"api-{uuid.uuid4().hex[:12]}"


class Tap:
    """A consumer group of its own on the in-memory component, behind the API's back."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, message: Message) -> bool:
        await self.received.put(message)
        return True

    async def next(self) -> Message:
        return await asyncio.wait_for(self.received.get(), 5)


@pytest.fixture
async def tap(sidecar: tuple[Sidecar, str]) -> AsyncIterator[tuple[str, Tap]]:
    component = sidecar[0].rt.get("pubsub", PUBSUB)
    assert isinstance(component, PubSub)
    topic, tap = new_topic(), Tap()
    subscription = await component.subscribe(topic, tap, {"consumerID": f"tap-{topic}"})
    try:
        yield topic, tap
    finally:
        await subscription.close()


def _envelope(message: Message) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(message.data)
    assert len(doc.pop("id")) == 36
    return doc


async def test_publish_wraps_the_data_in_each_apis_cloudevent(api: Api, tap: tuple[str, Tap]) -> None:
    topic, received = tap
    await api.publish(PUBSUB, topic, b"hello", "text/plain")
    await api.publish(PUBSUB, topic, b'{"n": 1}', "application/json", {"ttlInSeconds": "60"})
    await api.publish(PUBSUB, topic, b"as is", "", {"rawPayload": "true"})
    source, kind = {LAYOTTO: ("runtime", "com.runtime.event.sent"), DAPR: (APP_ID, "com.dapr.event.sent")}[api.name]
    common = {"specversion": "1.0", "source": source, "type": kind, "topic": topic, "pubsubname": PUBSUB, "traceid": ""}
    assert _envelope(await received.next()) == {**common, "datacontenttype": "text/plain", "data": "hello"}
    with_ttl = _envelope(await received.next())
    assert with_ttl.pop("expiration").endswith("Z")
    assert with_ttl == {**common, "datacontenttype": "application/json", "data": {"n": 1}}
    raw = await received.next()
    assert (raw.data, raw.metadata) == (b"as is", {})


async def test_publish_refusals(api: Api) -> None:
    bad = C.INVALID_ARGUMENT
    cases: list[tuple[tuple[str, str, bytes, str, dict[str, str]], dict[str, tuple[grpc.StatusCode, str]]]] = [
        (("", "t", b"", "", {}), {LAYOTTO: (bad, "pubsub name is empty"), DAPR: (bad, "pubsub name is empty")}),
        (
            (PUBSUB, "", b"", "", {}),
            {LAYOTTO: (bad, f"topic is empty in pubsub {PUBSUB}"), DAPR: (bad, f"topic is empty in pubsub {PUBSUB}")},
        ),
        (("nope", "t", b"", "", {}), {LAYOTTO: (bad, "pubsub nope not found"), DAPR: (bad, "pubsub nope not found")}),
        # Layotto checks the topic before looking the component up, Dapr the other way round.
        (
            ("nope", "", b"", "", {}),
            {LAYOTTO: (bad, "topic is empty in pubsub nope"), DAPR: (bad, "pubsub nope not found")},
        ),
        (
            (PUBSUB, "t", b"[1]", "application/cloudevents+json", {}),
            {
                LAYOTTO: (bad, "cannot create cloudevent: a cloudevent must be a JSON object"),
                DAPR: (bad, "cannot create cloudevent: a cloudevent must be a JSON object"),
            },
        ),
        (
            (PUBSUB, "t", b"{", "application/cloudevents+json", {}),
            dict.fromkeys((LAYOTTO, DAPR), (bad, f"cannot create cloudevent: {NOT_JSON}")),
        ),
    ]
    for (name, topic, data, content_type, metadata), expected in cases:
        assert await failure(api.publish(name, topic, data, content_type, metadata)) == expected[api.name], name


async def test_a_ttl_that_is_not_a_number(api: Api, tap: tuple[str, Tap]) -> None:
    topic, received = tap
    call = api.publish(PUBSUB, topic, b"x", "", {"ttlInSeconds": "soon"})
    if api.name == LAYOTTO:
        await call  # ignored, as upstream does
        assert "expiration" not in _envelope(await received.next())
    else:
        assert await failure(call) == (C.INVALID_ARGUMENT, "ttlInSeconds must be an integer: 'soon'")


async def test_no_pubsub_configured(empty: Api) -> None:
    expected = {
        LAYOTTO: (C.INVALID_ARGUMENT, f"pubsub {PUBSUB} not found"),
        DAPR: (C.FAILED_PRECONDITION, "no pubsub is configured"),
    }
    assert await failure(empty.publish(PUBSUB, "t", b"x")) == expected[empty.name]


async def test_dapr_bulk_publish(channel: grpc.aio.Channel, tap: tuple[str, Tap]) -> None:
    topic, received = tap
    dapr = DaprApi(channel)

    def entry(entry_id: str, event: bytes) -> dpubsub.BulkPublishRequestEntry:
        return dpubsub.BulkPublishRequestEntry(entry_id=entry_id, event=event, content_type="text/plain")

    request = dpubsub.BulkPublishRequest(pubsub_name=PUBSUB, topic=topic, entries=[entry("1", b"a"), entry("2", b"b")])
    reply = await dapr.stub.BulkPublishEventAlpha1(request)
    assert list(reply.failedEntries) == []
    assert sorted([_envelope(await received.next())["data"] for _ in range(2)]) == ["a", "b"]
    for entries in ([entry("", b"a")], [entry("1", b"a"), entry("1", b"b")]):
        request = dpubsub.BulkPublishRequest(pubsub_name=PUBSUB, topic=topic, entries=entries)
        assert await failure(dapr.stub.BulkPublishEvent(request)) == (
            C.INVALID_ARGUMENT,
            "entryId is duplicated or not present for entry",
        )
