"""Publish inputs the Pub/Sub core refuses (found by fuzzing), through both gRPC APIs and Dapr's
HTTP API on the in-memory pub/sub: a `ttlInSeconds` too large to be an expiration (it raised
OverflowError: UNKNOWN "Unexpected <class 'OverflowError'>") or written in other digits than
ASCII, and JSON nested deeper than the runtime parses (it raised RecursionError). A refused
event is not published; delivery of such JSON from elsewhere hands it over as it is."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from layotto.components.pubsub.base import Message, PubSub
from layotto.core import cloudevents
from layotto.sidecar import Sidecar
from tests.api.clients import LAYOTTO, Api, failure
from tests.api.conftest import PUBSUB, DaprHttp

C = grpc.StatusCode
HUGE = "99999999999999999999"
MAX_TTL = 2**31 - 1
LIMIT = cloudevents.MAX_JSON_DEPTH
TOO_DEEP = f"cannot create cloudevent: the JSON is nested deeper than {LIMIT} levels"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


class Tap:
    """A consumer group of its own on the in-memory component: what was really published."""

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
    topic, tap = f"bad-{uuid.uuid4().hex[:12]}", Tap()
    subscription = await component.subscribe(topic, tap, {"consumerID": f"tap-{topic}"})
    try:
        yield topic, tap
    finally:
        await subscription.close()


async def _only_the_marker(api: Api, topic: str, received: Tap) -> None:
    """Nothing was published on `topic` before this: the next event is the marker sent now."""
    await api.publish(PUBSUB, topic, b"marker", "text/plain")
    assert json.loads((await received.next()).data)["data"] == "marker"


async def test_a_huge_ttl_is_refused_by_every_api(api: Api, tap: tuple[str, Tap]) -> None:
    topic, received = tap
    for ttl in (HUGE, str(MAX_TTL + 1), "9" * 5000):
        code, message = await failure(api.publish(PUBSUB, topic, b"x", "text/plain", {"ttlInSeconds": ttl}))
        assert code == C.INVALID_ARGUMENT, message
        assert message.startswith(f"ttlInSeconds {ttl[:40]}"), message
        assert message.endswith(f" is out of range (at most {MAX_TTL})"), message
    await _only_the_marker(api, topic, received)


async def test_the_longest_ttl_is_kept(api: Api, tap: tuple[str, Tap]) -> None:
    topic, received = tap
    await api.publish(PUBSUB, topic, b"x", "text/plain", {"ttlInSeconds": str(MAX_TTL)})
    envelope = json.loads((await received.next()).data)
    assert envelope["expiration"] > "2090"


@pytest.mark.parametrize("ttl", ["\u0661\u0660", "\uff11\uff10", " 10", "1_0"])
async def test_a_ttl_in_other_digits_is_no_integer(api: Api, tap: tuple[str, Tap], ttl: str) -> None:
    """int() reads these as 10; Go's strconv (upstream) does not."""
    topic, received = tap
    call = api.publish(PUBSUB, topic, b"x", "text/plain", {"ttlInSeconds": ttl})
    if api.name == LAYOTTO:
        await call  # a TTL that is no integer is ignored, as upstream Layotto does
        assert "expiration" not in json.loads((await received.next()).data)
    else:
        assert await failure(call) == (C.INVALID_ARGUMENT, f"ttlInSeconds must be an integer: {ttl!r}")
        await _only_the_marker(api, topic, received)


@pytest.mark.parametrize("content_type", ["application/cloudevents+json", "application/json"])
async def test_json_nested_too_deep_is_refused(api: Api, tap: tuple[str, Tap], content_type: str) -> None:
    topic, received = tap
    for depth in (LIMIT + 1, 100_000):
        body = b'{"data": ' + nested(depth) + b"}"
        assert await failure(api.publish(PUBSUB, topic, body, content_type)) == (C.INVALID_ARGUMENT, TOO_DEEP)
    await _only_the_marker(api, topic, received)


async def test_json_as_deep_as_the_limit_goes_through(api: Api, tap: tuple[str, Tap]) -> None:
    topic, received = tap
    data = nested(LIMIT)
    await api.publish(PUBSUB, topic, data, "application/json")
    event = cloudevents.decode((await received.next()).data, topic=topic, pubsub_name=PUBSUB)
    assert event.data == data and event.data_content_type == "application/json"
    # Brackets inside strings do not nest.
    quoted = json.dumps({"s": "[" * 10_000}).encode()
    await api.publish(PUBSUB, topic, quoted, "application/cloudevents+json")
    assert json.loads((await received.next()).data)["s"] == "[" * 10_000


def test_delivered_json_nested_too_deep_is_handed_over_as_it_is() -> None:
    """From a producer that is not a sidecar: no envelope the runtime can read, so the bytes."""
    payload = b'{"id": "1", "specversion": "1.0", "data": ' + nested(100_000) + b"}"
    event = cloudevents.decode(payload, topic="t", pubsub_name="p", message_id="m")
    assert (event.id, event.data, event.data_content_type) == ("m", payload, cloudevents.OCTET_STREAM)


# ---- Dapr's HTTP API ----


async def test_dapr_http_refuses_them_too(dapr_http: DaprHttp) -> None:
    path = f"/v1.0/publish/{PUBSUB}/bad-{uuid.uuid4().hex[:8]}"
    huge = await dapr_http("POST", path, data=b"x", params=[("metadata.ttlInSeconds", HUGE)])
    assert huge.error == (
        400,
        "ERR_PUBSUB_REQUEST_METADATA",
        f"ttlInSeconds {HUGE} is out of range (at most {MAX_TTL})",
    )
    deep = await dapr_http(
        "POST", path, data=nested(LIMIT + 1), headers={"Content-Type": "application/cloudevents+json"}
    )
    # daprd's answer to an envelope it cannot build, without the reason.
    assert deep.error == (500, "ERR_PUBSUB_CLOUD_EVENTS_SER", "cannot create cloudevent")
