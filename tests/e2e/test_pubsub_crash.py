"""Crash: SIGKILL the sidecar in the middle of a stream of events (Redis Streams, NATS
JetStream), delivered one by one or in batches (bulk subscribe); after a restart every event
whose publish succeeded is delivered."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import BulkCallbackApp, CallbackApp, running_app
from tests.contract.pubsub.backends import BY_NAME
from tests.contract.pubsub.harness import PUBSUB, cleanup_after, grpc_config, new_topic
from tests.support.sidecar import SidecarProcess

TOTAL = 600


async def publish_until_failure(address: str, topic: str, start: int, stop: int, published: list[bytes]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for i in range(start, stop):
            data = f"c-{i}".encode()
            try:
                await stub.PublishEvent(pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=data), timeout=5)
            except grpc.aio.AioRpcError:
                return  # the sidecar is gone: this event was not published
            published.append(data)


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
@pytest.mark.parametrize("name", ["redis", "nats"])
async def test_sigkill_mid_stream_loses_nothing(name: str, bulk: bool) -> None:
    backend = BY_NAME[name]
    backend.require()
    topic, app_id = new_topic(), f"crash-{uuid.uuid4().hex[:8]}"
    # A slow app (20 ms per event, 8 at a time; or 50 ms per batch of up to 10, two batches in
    # flight) so that events are in flight when the sidecar dies.
    subscriptions = [(PUBSUB, topic, {"maxConcurrency": "8"})]
    app: CallbackApp | BulkCallbackApp = (
        BulkCallbackApp(subscriptions, bulk=(10, 20), delay=0.05) if bulk else CallbackApp(subscriptions, delay=0.02)
    )
    config = grpc_config(backend, app_id, app.port)
    published: list[bytes] = []
    async with cleanup_after(backend, [topic], [app_id]), running_app(app):
        first = SidecarProcess(config, actuator=False)
        await asyncio.to_thread(first.start)
        try:
            await app.wait_for(lambda: app.list_calls > 0)
            publishing = asyncio.create_task(publish_until_failure(first.address, topic, 0, TOTAL, published))
            await app.wait_for(lambda: len(app.succeeded) >= 100, within=20)
            await asyncio.to_thread(first.kill)
            await publishing
        finally:
            first.kill()
        delivered_before_restart = len(app.succeeded)
        assert delivered_before_restart < len(published), "the crash must interrupt the stream"
        second = SidecarProcess(config, actuator=False)
        await asyncio.to_thread(second.start)
        try:
            await publish_until_failure(second.address, topic, TOTAL, TOTAL + 50, published)
            # Redis: pending entries of the dead consumer are claimed after processingTimeout (1s);
            # NATS: unacked messages come back after ackWait (1s).
            await app.wait_for(lambda: set(published) <= set(app.succeeded), within=30)
        finally:
            await asyncio.to_thread(second.terminate)
    missing = set(published) - set(app.succeeded)
    assert not missing
