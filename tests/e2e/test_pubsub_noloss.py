"""No loss: 5,000 events while the app fails 10% of deliveries (RETRY or an error), on every
durable backend (and MQTT QoS 1), one event per callback and with bulk subscribe (a Dapr app
answering each entry of its batches: read, acked and retried per entry in batches). Every event
must succeed at least once; duplicates are counted and reported. The sidecar is a real process,
as in production."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import RETRY, SUCCESS, Behaviour, BulkCallbackApp, CallbackApp, running_app
from tests.contract.pubsub.backends import BY_NAME
from tests.contract.pubsub.harness import PUBSUB, cleanup_after, grpc_config, new_topic
from tests.support.sidecar import SidecarProcess

EVENTS = int(os.environ.get("PUBSUB_NOLOSS_EVENTS", "5000"))


def flaky(seed: int) -> Behaviour:
    rng = random.Random(seed)

    def answer(event: cb.TopicEventRequest) -> int:
        roll = rng.random()
        if roll < 0.05:
            return RETRY
        if roll < 0.10:
            raise RuntimeError("app failed")
        return SUCCESS

    return answer


async def publish_all(stub: runtime_pb2_grpc.RuntimeStub, topic: str, count: int, concurrency: int = 64) -> None:
    pending = iter(range(count))

    async def worker() -> None:
        for i in pending:
            await stub.PublishEvent(
                pb.PublishEventRequest(
                    pubsub_name=PUBSUB, topic=topic, data=f"e-{i}".encode(), data_content_type="text/plain"
                )
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
@pytest.mark.parametrize("name", ["redis", "nats", "rabbitmq", "mqtt"])
async def test_no_event_lost_under_failures(name: str, bulk: bool, capsys: pytest.CaptureFixture[str]) -> None:
    backend = BY_NAME[name]
    backend.require()
    topic, app_id = new_topic(), f"noloss-{uuid.uuid4().hex[:8]}"
    subscriptions = [(PUBSUB, topic, {"maxConcurrency": "64", "retryBackoff": "0.005"})]
    app: CallbackApp | BulkCallbackApp = (
        BulkCallbackApp(subscriptions, flaky(7), bulk=(50, 20)) if bulk else CallbackApp(subscriptions, flaky(7))
    )
    sidecar = SidecarProcess(grpc_config(backend, app_id, app.port), actuator=False)
    async with cleanup_after(backend, [topic], [app_id]), running_app(app):
        await asyncio.to_thread(sidecar.start)
        try:
            await app.wait_for(lambda: app.list_calls > 0)
            async with grpc.aio.insecure_channel(sidecar.address) as channel:
                stub = runtime_pb2_grpc.RuntimeStub(channel)
                # The sidecar subscribes right after ListTopicSubscriptions; on non-durable MQTT
                # an event published before that would have no subscriber yet.
                await stub.PublishEvent(pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=b"warm-up"))
                await app.wait_for(lambda: app.succeeded[b"warm-up"] > 0 or len(app.received) > 0)
                started = time.monotonic()
                await publish_all(stub, topic, EVENTS)
                published = time.monotonic()
                await app.wait_for(lambda: len(app.succeeded) >= EVENTS + 1, within=60)
                done = time.monotonic()
        finally:
            await asyncio.to_thread(sidecar.terminate)
    expected = {f"e-{i}".encode() for i in range(EVENTS)} | {b"warm-up"}
    assert set(app.succeeded) == expected
    if isinstance(app, BulkCallbackApp):
        assert max(len(batch) for batch in app.batches) > 1, "the events did not come in batches"
    duplicates = sum(n - 1 for n in app.succeeded.values())
    failures = len(app.received) - sum(app.succeeded.values())
    with capsys.disabled():
        print(
            f"\n[no-loss {name}{' bulk' if bulk else ''}] {EVENTS} events: "
            f"publish {EVENTS / (published - started):.0f}/s, "
            f"end-to-end {EVENTS / (done - started):.0f}/s; app failures {failures}, duplicates {duplicates}"
        )
