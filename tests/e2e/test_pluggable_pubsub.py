"""A pluggable broker (tests/contract/pubsub/pluggable_broker.py, a process of its own on a Unix
socket) through both gRPC APIs. The pub/sub conformance suite runs it through the Layotto API
and the app callback (its `pluggable` row); here it is declared in Dapr YAML and its events go
through Dapr's streaming subscription too, and a broker process that dies and comes back on its
socket gets its publishers and subscribers back.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from layotto.config import dapr_yaml, layotto_json
from layotto.runtime.registry import ComponentRegistry
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.api.clients import APIS, client, failure
from tests.contract.pluggable_process import PUBSUB_MODULE, ComponentProcess, pubsub_registry, socket_folder
from tests.contract.pubsub.backends import PubSubTraits, Row
from tests.contract.pubsub.harness import PUBSUB, new_topic, pubsub_env
from tests.support.rows import BackendRow
from tests.support.sidecar import free_port, layotto_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.proto.runtime.v1 import appcallback_pb2 as dcb
    from dapr.proto.runtime.v1 import dapr_pb2_grpc
    from dapr.proto.runtime.v1 import pubsub_pb2 as dpubsub

TYPE = "test-pluggable-pubsub"
YAML_PUBSUB = "yaml_ps"
WITHIN = 15.0

YAML = f"""
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {YAML_PUBSUB}
spec:
  type: pubsub.{TYPE}
  version: v1
"""


def _forever(first: Any, queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    async def requests() -> AsyncIterator[Any]:
        yield first
        while (item := await queue.get()) is not None:
            yield item

    return requests()


async def test_a_dapr_yaml_broker_serves_both_apis_streams() -> None:
    port = free_port()
    cfg = layotto_json.load_document(layotto_config({"app": {"app_id": "pl-ps"}}, grpc_port=port), source="<test>")
    with tempfile.TemporaryDirectory(prefix="layotto-pluggable-yaml-") as resources:
        (Path(resources) / "pubsub.yaml").write_text(YAML)
        dapr_yaml.load_into(cfg, resources)
        sidecar = Sidecar(cfg, await pubsub_registry())
        await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            layotto = runtime_pb2_grpc.RuntimeStub(channel)
            dapr = dapr_pb2_grpc.DaprStub(channel)
            to_dapr, to_layotto = new_topic(), new_topic()

            dapr_acks: asyncio.Queue[Any] = asyncio.Queue()
            initial = dpubsub.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name=YAML_PUBSUB, topic=to_dapr)
            dapr_stream = dapr.SubscribeTopicEventsAlpha1(
                _forever(dpubsub.SubscribeTopicEventsRequestAlpha1(initial_request=initial), dapr_acks)
            )
            layotto_acks: asyncio.Queue[Any] = asyncio.Queue()
            l_initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=YAML_PUBSUB, topic=to_layotto)
            layotto_stream = layotto.SubscribeTopicEvents(
                _forever(pb.SubscribeTopicEventsRequest(initial_request=l_initial), layotto_acks)
            )
            assert (await dapr_stream.read()).HasField("initial_response")
            assert (await layotto_stream.read()).HasField("initial_response")

            # Published through Layotto's API, read through Dapr's; a RETRY comes again.
            await client(APIS[0], channel).publish(YAML_PUBSUB, to_dapr, b"to dapr", "text/plain")
            event = (await asyncio.wait_for(dapr_stream.read(), WITHIN)).event_message
            assert (event.data, event.topic, event.pubsub_name) == (b"to dapr", to_dapr, YAML_PUBSUB)
            for status in (dcb.TopicEventResponse.RETRY, dcb.TopicEventResponse.SUCCESS):
                processed = dpubsub.SubscribeTopicEventsRequestProcessedAlpha1(
                    id=event.id, status=dcb.TopicEventResponse(status=status)
                )
                await dapr_acks.put(dpubsub.SubscribeTopicEventsRequestAlpha1(event_processed=processed))
                if status == dcb.TopicEventResponse.RETRY:
                    again = (await asyncio.wait_for(dapr_stream.read(), WITHIN)).event_message
                    assert (again.id, again.data) == (event.id, b"to dapr")

            # Published through Dapr's API, read through Layotto's.
            await client(APIS[1], channel).publish(YAML_PUBSUB, to_layotto, b"to layotto", "text/plain")
            l_event = (await asyncio.wait_for(layotto_stream.read(), WITHIN)).event_message
            assert (l_event.data, l_event.topic, l_event.pubsub_name) == (b"to layotto", to_layotto, YAML_PUBSUB)
            ok = cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)
            await layotto_acks.put(
                pb.SubscribeTopicEventsRequest(
                    event_processed=pb.SubscribeTopicEventsRequestProcessed(id=l_event.id, status=ok)
                )
            )
            for queue in (dapr_acks, layotto_acks):
                await queue.put(None)
            dapr_stream.cancel()
            layotto_stream.cancel()
    finally:
        await sidecar.stop()


def _own_broker(folder: Path) -> Row:
    """A row for a broker process of this test's own, in `folder`."""

    async def registry() -> ComponentRegistry:
        found = ComponentRegistry(socket_folders=[str(folder)])
        assert await found.discover() == []
        return found

    return BackendRow(block="pubsub", type=TYPE, name="own", traits=PubSubTraits(), registry=registry)


async def _publish_until_taken(env: Any, topic: str, data: bytes) -> None:
    deadline = time.monotonic() + WITHIN
    while True:
        try:
            await env.publish(topic, data)
            return
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
            assert time.monotonic() < deadline, f"still UNAVAILABLE {WITHIN}s after the restart"
            await asyncio.sleep(0.05)


async def test_a_broker_that_dies_is_unavailable_then_its_subscribers_are_back() -> None:
    folder = socket_folder()
    socket = folder / f"{TYPE}.sock"
    broker = await ComponentProcess(PUBSUB_MODULE, socket).start()
    topic = new_topic()
    try:
        async with pubsub_env(_own_broker(folder), [(topic, {})]) as env:
            await env.publish(topic, b"before")
            await env.app.wait_for(lambda: env.app.succeeded[b"before"] == 1, within=WITHIN)

            broker.kill()  # SIGKILL: the socket file stays
            async with grpc.aio.insecure_channel(f"127.0.0.1:{env.sidecar.port}") as channel:
                for name in APIS:
                    code, message = await failure(client(name, channel).publish(PUBSUB, topic, b"lost", "text/plain"))
                    assert code == grpc.StatusCode.UNAVAILABLE, message
                    assert f"pluggable pubsub component '{PUBSUB}' ({socket}) is unavailable" in message, message

            await broker.start()  # the same socket; the new process knows no topic
            await _publish_until_taken(env, topic, b"after")
            # The subscription's stream is opened again: the app gets what was published since.
            await env.app.wait_for(lambda: env.app.succeeded[b"after"] == 1, within=WITHIN)
            assert env.app.succeeded[b"lost"] == 0
    finally:
        broker.stop()
