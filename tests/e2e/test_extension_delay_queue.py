"""DelayQueue.PublishDelayMessage through delay-capable pub/sub components: the subscriber
(a SubscribeTopicEvents stream) gets the event after the delay, never before."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2 as dq
from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2_grpc
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.services import require
from tests.support.sidecar import running_sidecar

#: Scheduling and delivery overhead allowed past the delay.
SLACK = 2.0


class Subscriber:
    """A SubscribeTopicEvents stream that acks every event and records when it arrived."""

    def __init__(self, stub: runtime_pb2_grpc.RuntimeStub, pubsub: str, topic: str) -> None:
        self._outgoing: asyncio.Queue[pb.SubscribeTopicEventsRequest | None] = asyncio.Queue()
        initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=pubsub, topic=topic)
        self._outgoing.put_nowait(pb.SubscribeTopicEventsRequest(initial_request=initial))
        self.call = stub.SubscribeTopicEvents(self._requests())

    async def _requests(self) -> AsyncIterator[pb.SubscribeTopicEventsRequest]:
        while (item := await self._outgoing.get()) is not None:
            yield item

    async def started(self) -> None:
        first = await asyncio.wait_for(self.call.read(), 10)
        assert first.WhichOneof("subscribe_topic_events_response_type") == "initial_response"

    async def next_event(self, within: float) -> tuple[cb.TopicEventRequest, float]:
        reply = await asyncio.wait_for(self.call.read(), within)
        arrived = time.monotonic()
        event = reply.event_message
        ok = cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)
        processed = pb.SubscribeTopicEventsRequestProcessed(id=event.id, status=ok)
        self._outgoing.put_nowait(pb.SubscribeTopicEventsRequest(event_processed=processed))
        return event, arrived

    def close(self) -> None:
        self._outgoing.put_nowait(None)
        self.call.cancel()


@contextlib.asynccontextmanager
async def stubs(config: dict[str, Any]) -> AsyncIterator[tuple[runtime_pb2_grpc.RuntimeStub, Any]]:
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel), delay_queue_pb2_grpc.DelayQueueStub(channel)


async def _delay_round_trip(config: dict[str, Any], pubsub: str) -> None:
    topic = f"delayed-{uuid.uuid4().hex}"
    async with stubs(config) as (runtime, delay_queue):
        subscriber = Subscriber(runtime, pubsub, topic)
        try:
            await subscriber.started()
            sent = time.monotonic()
            late = await delay_queue.PublishDelayMessage(
                dq.DelayMessageRequest(
                    component_name=pubsub,
                    topic=topic,
                    data=b'{"n": 2}',
                    data_content_type="application/json",
                    delay_in_seconds=2,
                    metadata={"k": "v"},
                )
            )
            early = await delay_queue.PublishDelayMessage(
                dq.DelayMessageRequest(component_name=pubsub, topic=topic, data=b"one", delay_in_seconds=1)
            )
            assert late.message_id and early.message_id and late.message_id != early.message_id

            first, first_at = await subscriber.next_event(1 + SLACK + 5)
            second, second_at = await subscriber.next_event(2 + SLACK + 5)
            # Delivered in due order, each no sooner than its delay.
            assert (first.id, first.data, first.data_content_type) == (early.message_id, b"one", "text/plain")
            assert first_at - sent >= 1.0 - 0.05
            assert second.id == late.message_id and json.loads(second.data) == {"n": 2}
            assert second_at - sent >= 2.0 - 0.05
            assert second_at - sent < 2.0 + SLACK
            assert (first.topic, first.pubsub_name) == (topic, pubsub)
        finally:
            subscriber.close()


async def test_in_memory_delivers_after_the_delay() -> None:
    await _delay_round_trip({"pub_subs": {"mem": {"type": "in-memory", "metadata": {}}}}, "mem")


def _redis_entry(queue_key: str) -> dict[str, Any]:
    return {
        "type": "redis",
        "metadata": {"redisHost": "127.0.0.1:6379", "delayQueueKey": queue_key, "delayPollInterval": "0.2s"},
    }


@pytest.fixture
async def queue_key() -> AsyncIterator[str]:
    key = f"layotto-test-delay-{uuid.uuid4().hex}"
    yield key
    import redis.asyncio as aioredis

    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        await client.delete(key, f"{key}:msg")
    finally:
        await client.aclose()


async def test_redis_delivers_after_the_delay(queue_key: str) -> None:
    require("redis")
    await _delay_round_trip({"pub_subs": {"rds": _redis_entry(queue_key)}}, "rds")


async def test_redis_delay_survives_the_sidecar_that_scheduled_it(queue_key: str) -> None:
    """Scheduled on one sidecar, which stops before the message is due; another sidecar on the
    same Redis publishes it."""
    require("redis")
    import redis.asyncio as aioredis

    topic = f"delayed-{uuid.uuid4().hex}"
    config = {"pub_subs": {"rds": _redis_entry(queue_key)}}
    async with stubs(config) as (_, delay_queue):
        reply = await delay_queue.PublishDelayMessage(
            dq.DelayMessageRequest(component_name="rds", topic=topic, data=b"survivor", delay_in_seconds=1)
        )
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        assert await client.zcard(queue_key) == 1  # held in Redis, not in the stopped sidecar
        async with stubs(config) as (runtime, _):
            subscriber = Subscriber(runtime, "rds", topic)
            try:
                await subscriber.started()
                event, _ = await subscriber.next_event(10)
                assert (event.id, event.data) == (reply.message_id, b"survivor")
            finally:
                subscriber.close()
        assert await client.zcard(queue_key) == 0 and await client.hlen(f"{queue_key}:msg") == 0
    finally:
        await client.delete(topic)
        await client.aclose()


async def test_not_delay_capable_and_bad_requests() -> None:
    require("mqtt")
    config = {
        "pub_subs": {
            "mem": {"type": "in-memory", "metadata": {}},
            "mq": {"type": "mqtt", "metadata": {"url": "tcp://127.0.0.1:1883"}},
        }
    }
    async with stubs(config) as (_, delay_queue):
        for name in ("nope", "mq"):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await delay_queue.PublishDelayMessage(
                    dq.DelayMessageRequest(component_name=name, topic="t", data=b"x", delay_in_seconds=1)
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == f"component not found. kind: delay_queue , name: {name}"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await delay_queue.PublishDelayMessage(dq.DelayMessageRequest(component_name="mem", topic=""))
        assert err.value.details() == "topic is empty in pubsub mem"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await delay_queue.PublishDelayMessage(
                dq.DelayMessageRequest(
                    component_name="mem", topic="t", data=b"[1]", data_content_type="application/cloudevents+json"
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(err.value.details()).startswith("cannot create cloudevent: ")
        # A TTL past what an event may live: refused before it is scheduled, as by PublishEvent.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await delay_queue.PublishDelayMessage(
                dq.DelayMessageRequest(component_name="mem", topic="t", data=b"x", metadata={"ttlInSeconds": "9" * 30})
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == f"ttlInSeconds {'9' * 30} is out of range (at most 2147483647)"
