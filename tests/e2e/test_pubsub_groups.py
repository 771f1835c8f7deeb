"""Consumer groups: two sidecars of one app id share the events; another app id gets all."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import grpc
import pytest

from layotto.runtime.delivery import DeliveryService
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pubsub.app import CallbackApp, running_app
from tests.contract.pubsub.backends import BY_NAME
from tests.contract.pubsub.harness import PUBSUB, cleanup_after, grpc_config, new_topic
from tests.support.sidecar import running_sidecar

EVENTS = 300


@pytest.mark.parametrize("name", ["redis", "nats", "rabbitmq", "mqtt"])
async def test_group_members_split_and_groups_each_get_all(name: str) -> None:
    backend = BY_NAME[name]
    backend.require()
    topic = new_topic()
    group_a, group_b = f"ga-{uuid.uuid4().hex[:8]}", f"gb-{uuid.uuid4().hex[:8]}"
    # A small per-member concurrency and a slow app make both members of group A busy.
    subscription = {"maxConcurrency": "4"}
    shared = asyncio.Condition()  # one condition, so a wait on one app sees the others' progress
    apps = [CallbackApp([(PUBSUB, topic, subscription)], delay=0.005, changed=shared) for _ in range(3)]
    app_ids = [group_a, group_a, group_b]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(cleanup_after(backend, [topic], [group_a, group_b]))
        addresses = []
        for app, app_id in zip(apps, app_ids, strict=True):
            await stack.enter_async_context(running_app(app))
            sidecar, address = await stack.enter_async_context(running_sidecar(grpc_config(backend, app_id, app.port)))
            service = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
            await asyncio.wait_for(service.ready.wait(), 10)
            addresses.append(address)
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(addresses[0]))
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        payloads = [f"g-{i}".encode() for i in range(EVENTS)]
        for chunk in range(0, EVENTS, 50):
            await asyncio.gather(
                *(
                    stub.PublishEvent(pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=p))
                    for p in payloads[chunk : chunk + 50]
                )
            )
        a1, a2, b = apps
        try:
            await a1.wait_for(lambda: set(payloads) <= set(a1.succeeded) | set(a2.succeeded), within=30)
            await b.wait_for(lambda: set(payloads) <= set(b.succeeded), within=30)
        except TimeoutError:
            counts = [(len(x.succeeded), len(x.received)) for x in apps]
            raise AssertionError(f"not all delivered: (succeeded, received) per app {counts}") from None
        assert len(a1.succeeded) > 0 and len(a2.succeeded) > 0, (len(a1.succeeded), len(a2.succeeded))
        both = set(a1.succeeded) & set(a2.succeeded)
        assert len(both) < EVENTS // 10, "members of one group must not each get every event"
