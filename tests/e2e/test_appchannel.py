"""The runtime's one channel to its app: event delivery and invocations share one connection
per app, whichever callback API the app serves, and it is closed when the sidecar stops."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, empty_pb2

from layotto.config import layotto_json
from layotto.errors import ConfigError
from layotto.runtime.delivery import DeliveryService
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc, runtime_pb2_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from tests.e2e.invoke_apps import EchoApp
from tests.support.sidecar import free_port, layotto_config, running_sidecar


class SubscribingApp(EchoApp):
    """The echo app, subscribed to one topic; records the peer of every callback."""

    def __init__(self, name: str, topic: str) -> None:
        super().__init__(name)
        self.topic = topic
        self.peers: list[str] = []
        self.events: asyncio.Queue[tuple[cb.TopicEventRequest, dict[str, str]]] = asyncio.Queue()

    async def ListTopicSubscriptions(self, request: empty_pb2.Empty, context: Any) -> cb.ListTopicSubscriptionsResponse:
        self.peers.append(context.peer())
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[cb.TopicSubscription(pubsub_name="mem", topic=self.topic)]
        )

    async def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> cb.TopicEventResponse:
        self.peers.append(context.peer())
        self.events.put_nowait((request, dict(context.invocation_metadata())))
        return cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)

    async def OnInvoke(self, request: cb.AppInvokeRequest, context: Any) -> cb.AppInvokeResponse:
        self.peers.append(context.peer())
        return await super().OnInvoke(request, context)


@contextlib.asynccontextmanager
async def serving(servicer: appcallback_pb2_grpc.AppCallbackServicer) -> AsyncIterator[int]:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def _config(app_id: str, port: int) -> dict[str, Any]:
    return {"app": {"app_id": app_id, "grpc_callback_port": port}, "pub_subs": {"mem": {"type": "in-memory"}}}


async def test_delivery_and_invocation_share_one_connection() -> None:
    topic = f"ch-{uuid.uuid4().hex}"
    app = SubscribingApp("app-ch", topic)
    async with (
        serving(app) as port,
        running_sidecar(_config("app-ch", port)) as (
            sidecar,
            address,
        ),
    ):
        delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
        await asyncio.wait_for(delivery.ready.wait(), 10)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            await stub.PublishEvent(pb.PublishEventRequest(pubsub_name="mem", topic=topic, data=b"hi"))
            event, _ = await asyncio.wait_for(app.events.get(), 10)
            reply = await stub.InvokeService(
                pb.InvokeServiceRequest(
                    id="app-ch", message=pb.CommonInvokeRequest(method="echo", data=any_pb2.Any(value=b"x"))
                )
            )
        assert event.data == b"hi" and b'"method": "echo"' in reply.data.value
        assert len(app.peers) == 3 and len(set(app.peers)) == 1, app.peers
        assert sidecar.invoker is not None
        assert sidecar.app_channel is not None
        assert delivery.channel is sidecar.app_channel is sidecar.invoker.app_channel
        channel = sidecar.app_channel
    # The sidecar closed it once its users were done: nothing is left open.
    assert sidecar.app_channel is None
    with pytest.raises(Exception, match=r"(?i)closed"):
        await channel.list_subscriptions()


async def test_an_unknown_callback_api_stops_the_sidecar_from_starting() -> None:
    doc = layotto_config({"app": {"app_id": "app-u", "grpc_callback_port": free_port()}}, grpc_port=free_port())
    cfg = layotto_json.load_document(doc, source="<test>")
    cfg.app.callback_api = "soap"
    sidecar = Sidecar(cfg)
    try:
        with pytest.raises(ConfigError, match=r"unknown app callback_api 'soap' \(known: dapr, layotto\)"):
            await sidecar.start()
    finally:
        await sidecar.stop()


async def test_a_dapr_app_without_list_topic_subscriptions_subscribes_to_nothing() -> None:
    from dapr.proto.runtime.v1 import appcallback_pb2_grpc as dapr_cb_grpc

    from layotto.api.dapr import appchannel as dapr_appchannel

    server = grpc.aio.server()
    dapr_cb_grpc.add_AppCallbackServicer_to_server(dapr_cb_grpc.AppCallbackServicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        channel = dapr_appchannel.DaprAppChannel(f"127.0.0.1:{port}", grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        try:
            assert await channel.list_subscriptions() == []
        finally:
            await channel.close()
    finally:
        await server.stop(None)
