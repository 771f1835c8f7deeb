"""Bad input and misbehaving apps: clear errors, no crash, nothing lost."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import CallbackApp, running_app
from tests.contract.pubsub.backends import BY_NAME
from tests.contract.pubsub.harness import PUBSUB, cleanup_after, grpc_config, new_topic, pubsub_env
from tests.support.sidecar import free_port, running_sidecar

REDIS = BY_NAME["redis"]


async def test_app_that_comes_up_late_gets_every_event() -> None:
    """The sidecar serves (and publishes) while the app is down, and delivers once it is up;
    an event whose ttl ran out meanwhile is dropped."""
    REDIS.require()
    topic, app_id = new_topic(), f"late-{uuid.uuid4().hex[:8]}"
    app = CallbackApp([(PUBSUB, topic, {})])
    async with (
        cleanup_after(REDIS, [topic], [app_id]),
        running_sidecar(grpc_config(REDIS, app_id, app.port)) as (sidecar, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await stub.PublishEvent(
            pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=b"short-lived", metadata={"ttlInSeconds": "1"})
        )
        for i in range(20):
            await stub.PublishEvent(pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=f"early-{i}".encode()))
        assert sidecar.rt.status == "UP"
        # The ttl is wall-clock time; nothing to await but its passing.
        await asyncio.sleep(1.2)
        async with running_app(app):
            await app.wait_for(lambda: len(app.succeeded) == 20, within=15)
            await stub.PublishEvent(pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=b"after"))
            await app.wait_for(lambda: app.succeeded[b"after"] == 1)
        assert b"short-lived" not in {e.data for e in app.received}
        service = next(s for s in sidecar.rt.services if hasattr(s, "stats"))
        assert service.stats.expired == 1  # type: ignore[attr-defined]


async def test_unknown_pubsub_in_subscriptions_is_ignored() -> None:
    REDIS.require()
    topic = new_topic()
    app = CallbackApp([("no-such-pubsub", topic, {}), (PUBSUB, topic, {})])
    app_id = f"unk-{uuid.uuid4().hex[:8]}"
    async with (
        cleanup_after(REDIS, [topic], [app_id]),
        running_app(app),
        running_sidecar(grpc_config(REDIS, app_id, app.port)) as (sidecar, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        service = next(s for s in sidecar.rt.services if hasattr(s, "ready"))
        await asyncio.wait_for(service.ready.wait(), 10)  # type: ignore[attr-defined]
        await runtime_pb2_grpc.RuntimeStub(channel).PublishEvent(
            pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=b"ok")
        )
        await app.wait_for(lambda: app.succeeded[b"ok"] == 1)


class _NoOnTopicEvent(cb_grpc.AppCallbackServicer):
    """An app that lists a subscription but does not implement OnTopicEvent."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    async def ListTopicSubscriptions(self, request: object, context: object) -> cb.ListTopicSubscriptionsResponse:
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[cb.TopicSubscription(pubsub_name=PUBSUB, topic=self.topic)]
        )


async def test_unimplemented_on_topic_event_drops() -> None:
    topic, port = new_topic(), free_port()
    server = grpc.aio.server()
    cb_grpc.add_AppCallbackServicer_to_server(_NoOnTopicEvent(topic), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        async with (
            running_sidecar(grpc_config(BY_NAME["in-memory"], "unimpl", port)) as (sidecar, address),
            grpc.aio.insecure_channel(address) as channel,
        ):
            service = next(s for s in sidecar.rt.services if hasattr(s, "ready"))
            await asyncio.wait_for(service.ready.wait(), 10)  # type: ignore[attr-defined]
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            await stub.PublishEvent(pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=b"x"))
            stats = service.stats  # type: ignore[attr-defined]
            for _ in range(100):  # the drop happens in the sidecar; poll its counter, bounded
                if stats.dropped:
                    break
                await asyncio.sleep(0.02)
            assert stats.dropped == 1 and stats.retried == 0
    finally:
        await server.stop(0)


@pytest.mark.parametrize("name", ["in-memory", "redis"])
async def test_callback_timeout_counts_as_retry(name: str) -> None:
    topic = new_topic()
    sub = {"appCallbackTimeout": "0.3", "retryBackoff": "0.01"}
    async with pubsub_env(BY_NAME[name], [(topic, sub)]) as env:
        env.app.delay = 5.0  # longer than the callback timeout: the sidecar gives up and retries
        await env.publish(topic, b"slow")
        await env.app.wait_for(lambda: len(env.app.received) >= 2)
        env.app.delay = 0.0
        await env.app.wait_for(lambda: env.app.succeeded[b"slow"] >= 1, within=10)
        assert env.delivery.stats.retried >= 1
