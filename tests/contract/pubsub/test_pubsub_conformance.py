"""One suite over every pubsub component: same tests, a table of configs (backends.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from layotto.observability.metrics import registry
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from tests.contract.pubsub.app import DROP, RETRY, SUCCESS
from tests.contract.pubsub.backends import DURABLE, ROWS, Row
from tests.contract.pubsub.harness import PUBSUB, new_topic, pubsub_env
from tests.support.rows import params


@pytest.fixture(params=params(ROWS))
def backend(request: pytest.FixtureRequest) -> Row:
    b: Row = request.param
    b.require()
    return b


async def test_publish_delivers_envelope_fields(backend: Row) -> None:
    topic = new_topic()
    async with pubsub_env(backend, [(topic, {})]) as env:
        await env.publish(topic, b'{"n": 1}', "application/json")
        await env.publish(topic, b"hello", "text/plain")
        await env.publish(topic, b"\x00\xff", "application/octet-stream")
        given = {"id": "my-id", "source": "me", "type": "my.type", "specversion": "1.0", "data": {"k": "v"}}
        await env.publish(topic, json.dumps(given).encode(), "application/cloudevents+json")
        await env.app.wait_for(lambda: len(env.app.received) >= 4)
        by_type = {e.data_content_type: e for e in env.app.received}
        event = by_type["application/json"]
        assert json.loads(event.data) == {"n": 1}
        assert (event.source, event.type, event.spec_version) == ("runtime", "com.runtime.event.sent", "1.0")
        assert (event.topic, event.pubsub_name) == (topic, PUBSUB)
        assert len(event.id) == 36
        assert by_type["text/plain"].data == b"hello"
        assert by_type["application/octet-stream"].data == b"\x00\xff"
        own = next(e for e in env.app.received if e.id == "my-id")
        assert (own.source, own.type, own.topic, json.loads(own.data)) == ("me", "my.type", topic, {"k": "v"})


async def test_envelope_on_the_wire(backend: Row) -> None:
    """What the backend carries: upstream's CloudEvents JSON (read back via rawPayload)."""
    topic = new_topic()
    async with pubsub_env(backend, [(topic, {"rawPayload": "true"})]) as env:
        await env.stub.PublishEvent(
            pb.PublishEventRequest(
                pubsub_name=PUBSUB,
                topic=topic,
                data=b"\x01\x02",
                data_content_type="application/octet-stream",
                metadata={"ttlInSeconds": "60"},
            ),
            metadata=[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        )
        await env.app.wait_for(lambda: len(env.app.received) >= 1)
        envelope = json.loads(env.app.received[0].data)
        assert envelope["data_base64"] == base64.b64encode(b"\x01\x02").decode()
        assert envelope["topic"] == topic and envelope["pubsubname"] == PUBSUB
        assert envelope["traceid"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        assert envelope["datacontenttype"] == "application/octet-stream"
        assert envelope["specversion"] == "1.0" and envelope["expiration"].endswith("Z")


async def test_raw_payload_is_sent_as_is(backend: Row) -> None:
    topic = new_topic()
    async with pubsub_env(backend, [(topic, {})]) as env:
        await env.publish(topic, b"not json at all", "text/plain", {"rawPayload": "true"})
        await env.app.wait_for(lambda: len(env.app.received) >= 1)
        event = env.app.received[0]
        assert event.data == b"not json at all"
        assert event.data_content_type == "application/octet-stream"
        assert event.topic == topic


async def test_retry_redelivers_until_success(backend: Row) -> None:
    topic = new_topic()
    answers: Counter[bytes] = Counter()

    def twice_retry(event: cb.TopicEventRequest) -> int:
        answers[event.data] += 1
        return RETRY if answers[event.data] <= 2 else SUCCESS

    async with pubsub_env(backend, [(topic, {})], twice_retry) as env:
        await env.publish(topic, b"again")
        await env.app.wait_for(lambda: env.app.succeeded[b"again"] == 1)
        assert answers[b"again"] == 3
        assert env.delivery.stats.retried == 2


async def test_retry_beyond_local_retries_is_redelivered_by_backend(backend: Row) -> None:
    topic = new_topic()
    answers: Counter[bytes] = Counter()

    def fail_five(event: cb.TopicEventRequest) -> int:
        answers[event.data] += 1
        if answers[event.data] <= 5:
            raise RuntimeError("app failure")
        return SUCCESS

    async with pubsub_env(backend, [(topic, {"maxRetries": "1", "retryBackoff": "0.01"})], fail_five) as env:
        await env.publish(topic, b"stubborn")
        await env.app.wait_for(lambda: env.app.succeeded[b"stubborn"] == 1, within=15)
        assert env.delivery.stats.nacked >= 2


async def test_drop_discards(backend: Row) -> None:
    topic = new_topic()
    async with pubsub_env(backend, [(topic, {})], lambda e: DROP if e.data == b"bad" else SUCCESS) as env:
        await env.publish(topic, b"bad")
        await env.app.wait_for(lambda: len(env.app.received) == 1)
        await env.publish(topic, b"good")
        await env.app.wait_for(lambda: env.app.succeeded[b"good"] == 1)
        assert [e.data for e in env.app.received].count(b"bad") == 1
        assert env.delivery.stats.dropped == 1
        labels = {"pubsub": PUBSUB, "topic": topic, "outcome": "dropped"}
        assert registry().get_sample_value("layotto_pubsub_events_total", labels) == 1


async def test_dead_letter_after_max_attempts(backend: Row) -> None:
    topic, dead = new_topic(), new_topic()
    subs = [(topic, {"deadLetterTopic": dead, "maxDeliveryAttempts": "3", "retryBackoff": "0.01"}), (dead, {})]
    async with pubsub_env(backend, subs, lambda e: RETRY if e.topic == topic else SUCCESS) as env:
        await env.publish(topic, b"poison")
        await env.app.wait_for(lambda: any(e.topic == dead for e in env.app.received), within=15)
        assert [e.topic for e in env.app.received].count(topic) == 3
        dead_event = next(e for e in env.app.received if e.topic == dead)
        assert dead_event.data == b"poison"
        assert env.delivery.stats.dead_lettered == 1


async def test_unknown_status_is_retried(backend: Row) -> None:
    topic = new_topic()
    answers: Counter[bytes] = Counter()

    def garbage_first(event: cb.TopicEventRequest) -> int:
        answers[event.data] += 1
        return 7 if answers[event.data] == 1 else SUCCESS

    async with pubsub_env(backend, [(topic, {})], garbage_first) as env:
        await env.publish(topic, b"x")
        await env.app.wait_for(lambda: env.app.succeeded[b"x"] == 1)
        assert answers[b"x"] == 2


async def _requests(
    queue: asyncio.Queue[pb.SubscribeTopicEventsRequest | None],
) -> AsyncIterator[pb.SubscribeTopicEventsRequest]:
    while (item := await queue.get()) is not None:
        yield item


async def test_subscribe_topic_events_stream(backend: Row) -> None:
    topic = new_topic()
    async with pubsub_env(backend, [], extra_topics=[topic]) as env:
        outgoing: asyncio.Queue[pb.SubscribeTopicEventsRequest | None] = asyncio.Queue()
        initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=PUBSUB, topic=topic)
        outgoing.put_nowait(pb.SubscribeTopicEventsRequest(initial_request=initial))
        call = env.stub.SubscribeTopicEvents(_requests(outgoing))
        first = await call.read()
        assert first.WhichOneof("subscribe_topic_events_response_type") == "initial_response"
        await env.publish(topic, b"streamed")
        event = (await asyncio.wait_for(call.read(), 10)).event_message
        assert (event.data, event.topic, event.pubsub_name) == (b"streamed", topic, PUBSUB)
        retry = cb.TopicEventResponse(status=cb.TopicEventResponse.RETRY)
        outgoing.put_nowait(
            pb.SubscribeTopicEventsRequest(
                event_processed=pb.SubscribeTopicEventsRequestProcessed(id=event.id, status=retry)
            )
        )
        again = (await asyncio.wait_for(call.read(), 10)).event_message
        assert again.id == event.id and again.data == b"streamed"
        ok = cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)
        outgoing.put_nowait(
            pb.SubscribeTopicEventsRequest(
                event_processed=pb.SubscribeTopicEventsRequestProcessed(id=event.id, status=ok)
            )
        )
        await env.publish(topic, b"second")
        nxt = (await asyncio.wait_for(call.read(), 10)).event_message
        assert nxt.data == b"second"
        outgoing.put_nowait(None)
        call.cancel()


@pytest.mark.parametrize("backend", params(DURABLE), indirect=True)
async def test_closed_stream_gives_unacked_events_back(backend: Row) -> None:
    topic = new_topic()
    async with pubsub_env(backend, [], extra_topics=[topic]) as env:
        initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=PUBSUB, topic=topic)
        for attempt in range(2):
            outgoing: asyncio.Queue[pb.SubscribeTopicEventsRequest | None] = asyncio.Queue()
            outgoing.put_nowait(pb.SubscribeTopicEventsRequest(initial_request=initial))
            call = env.stub.SubscribeTopicEvents(_requests(outgoing))
            await call.read()  # initial_response
            if attempt == 0:
                await env.publish(topic, b"unacked")
            event = (await asyncio.wait_for(call.read(), 15)).event_message
            assert event.data == b"unacked"
            call.cancel()  # no event_processed: the event must come back to the next stream


async def test_subscribe_topic_events_validation(backend: Row) -> None:
    async with pubsub_env(backend, []) as env:
        cases = [
            (pb.SubscribeTopicEventsRequestInitial(pubsub_name="", topic="t"), "pubsub name is empty"),
            (pb.SubscribeTopicEventsRequestInitial(pubsub_name=PUBSUB, topic=""), f"topic is empty in pubsub {PUBSUB}"),
            (pb.SubscribeTopicEventsRequestInitial(pubsub_name="nope", topic="t"), "pubsub nope not found"),
        ]
        for initial, message in cases:
            call = env.stub.SubscribeTopicEvents(iter([pb.SubscribeTopicEventsRequest(initial_request=initial)]))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()
            assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("name", "topic", "content_type", "data", "code", "message"),
    [
        ("", "t", "", b"", grpc.StatusCode.INVALID_ARGUMENT, "pubsub name is empty"),
        (PUBSUB, "", "", b"", grpc.StatusCode.INVALID_ARGUMENT, f"topic is empty in pubsub {PUBSUB}"),
        ("", "", "", b"", grpc.StatusCode.INVALID_ARGUMENT, "pubsub name is empty"),
        ("nope", "t", "", b"", grpc.StatusCode.INVALID_ARGUMENT, "pubsub nope not found"),
        (PUBSUB, "t", "application/cloudevents+json", b"[1", grpc.StatusCode.INVALID_ARGUMENT, None),
    ],
)
async def test_publish_validation(
    backend: Row, name: str, topic: str, content_type: str, data: bytes, code: grpc.StatusCode, message: str | None
) -> None:
    async with pubsub_env(backend, []) as env:
        request = pb.PublishEventRequest(pubsub_name=name, topic=topic, data=data, data_content_type=content_type)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await env.stub.PublishEvent(request)
        assert info.value.code() == code
        if message is None:
            assert info.value.details().startswith("cannot create cloudevent: ")
        else:
            assert info.value.details() == message


class _InFlight:
    """Peak number of deliveries in the app at once. The app records a delivery when it
    arrives and calls the behaviour when it ends, so at each end the count of started minus
    ended deliveries bounds the in-flight number from below, and its maximum is the peak."""

    def __init__(self) -> None:
        self.started: list[cb.TopicEventRequest] = []
        self.ended = 0
        self.peak = 0

    def behaviour(self, event: cb.TopicEventRequest) -> int:
        self.peak = max(self.peak, len(self.started) - self.ended)
        self.ended += 1
        return SUCCESS


@pytest.mark.parametrize("limit", [1, 3])
async def test_concurrency_limit_per_subscription(backend: Row, limit: int) -> None:
    topic = new_topic()
    flight = _InFlight()
    async with pubsub_env(backend, [(topic, {"maxConcurrency": str(limit)})], flight.behaviour) as env:
        flight.started = env.app.received
        env.app.delay = 0.05  # a slow app: events queue up behind the limit
        for i in range(12):
            await env.publish(topic, f"e{i}".encode())
        await env.app.wait_for(lambda: sum(env.app.succeeded.values()) == 12, within=20)
    assert flight.peak <= limit, f"{flight.peak} deliveries at once with maxConcurrency={limit}"
    assert flight.peak >= min(limit, 2), "deliveries were serialised below the configured limit"


async def test_one_publisher_order_is_kept(backend: Row) -> None:
    # Every backend here keeps one topic's order for a single consumer; with one delivery in
    # flight at a time the app sees events in publish order.
    topic = new_topic()
    async with pubsub_env(backend, [(topic, {"maxConcurrency": "1"})]) as env:
        sent = [f"m{i:02d}".encode() for i in range(20)]
        for data in sent:
            await env.publish(topic, data)
        await env.app.wait_for(lambda: sum(env.app.succeeded.values()) == len(sent), within=20)
        assert [e.data for e in env.app.received] == sent
