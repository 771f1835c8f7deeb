"""The other blocks of Dapr's pluggable protocol: a secret store and a binding (output and input)
served by plain grpc.aio servers on Unix sockets, through both gRPC APIs and, for input, through
the block interface (events in, the app's verdicts back to the component)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import BindingEvent, BindingFeature, OutputBinding
from layotto.components.secretstores.base import SecretStoreFeature
from layotto.runtime.registry import ComponentRegistry
from layotto_proto.dapr.proto.components.v1 import bindings_pb2, bindings_pb2_grpc, common_pb2, secretstore_pb2_grpc
from layotto_proto.dapr.proto.components.v1 import secretstore_pb2 as spb
from tests.api.clients import APIS, DAPR, LAYOTTO, Api, client, failure
from tests.contract.pluggable_process import socket_folder
from tests.support.sidecar import running_sidecar

Ctx = grpc.aio.ServicerContext[Any, Any]
SECRETS = {"db": {"user": "admin", "password": "pw"}, "token": {"token": "t0k"}}
WITHIN = 10.0


class Vault(secretstore_pb2_grpc.SecretStoreServicer):
    async def Init(self, request: spb.SecretStoreInitRequest, context: Ctx) -> spb.SecretStoreInitResponse:
        return spb.SecretStoreInitResponse()

    async def Features(self, request: common_pb2.FeaturesRequest, context: Ctx) -> common_pb2.FeaturesResponse:
        return common_pb2.FeaturesResponse(features=["MULTIPLE_KEY_VALUES_PER_SECRET"])

    async def Ping(self, request: common_pb2.PingRequest, context: Ctx) -> common_pb2.PingResponse:
        return common_pb2.PingResponse()

    async def Get(self, request: spb.GetSecretRequest, context: Ctx) -> spb.GetSecretResponse:
        if request.key not in SECRETS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.key} not found")
        return spb.GetSecretResponse(data=SECRETS[request.key])

    async def BulkGet(self, request: spb.BulkGetSecretRequest, context: Ctx) -> spb.BulkGetSecretResponse:
        return spb.BulkGetSecretResponse(data={k: spb.SecretResponse(secrets=v) for k, v in SECRETS.items()})


@dataclass
class Queue(bindings_pb2_grpc.OutputBindingServicer, bindings_pb2_grpc.InputBindingServicer):
    """An output binding that echoes (`create`) and an input binding streaming `events`, keeping
    the answers it gets for them by message id."""

    events: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    answers: dict[str, str] = field(default_factory=dict)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def Init(self, request: Any, context: Ctx) -> Any:
        if isinstance(request, bindings_pb2.OutputBindingInitRequest):
            return bindings_pb2.OutputBindingInitResponse()
        return bindings_pb2.InputBindingInitResponse()

    async def Ping(self, request: common_pb2.PingRequest, context: Ctx) -> common_pb2.PingResponse:
        return common_pb2.PingResponse()

    async def ListOperations(
        self, request: bindings_pb2.ListOperationsRequest, context: Ctx
    ) -> bindings_pb2.ListOperationsResponse:
        return bindings_pb2.ListOperationsResponse(operations=["create", "fail"])

    async def Invoke(self, request: bindings_pb2.InvokeRequest, context: Ctx) -> bindings_pb2.InvokeResponse:
        if request.operation == "fail":
            await context.abort(grpc.StatusCode.INTERNAL, "the queue is full")
        return bindings_pb2.InvokeResponse(data=b"echo:" + request.data, metadata={"op": request.operation})

    async def Read(self, requests: AsyncIterator[bindings_pb2.ReadRequest], context: Ctx) -> AsyncIterator[Any]:
        async def answers() -> None:
            async for answer in requests:
                self.answers[answer.message_id] = answer.response_error.message
                self.answered.set()

        reading = asyncio.create_task(answers())
        try:
            for n in range(1, 1_000):
                data = await self.events.get()
                yield bindings_pb2.ReadResponse(data=data, metadata={"n": str(n)}, message_id=f"m{n}")
        finally:
            reading.cancel()


@dataclass
class Served:
    registry: ComponentRegistry
    queue: Queue


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[Served]:
    folder = socket_folder()
    queue = Queue()
    servers = []
    for name, add, services in (
        ("vault", lambda s: secretstore_pb2_grpc.add_SecretStoreServicer_to_server(Vault(), s), [spb]),
        (
            "queue",
            lambda s: (
                bindings_pb2_grpc.add_OutputBindingServicer_to_server(queue, s),
                bindings_pb2_grpc.add_InputBindingServicer_to_server(queue, s),
            ),
            [bindings_pb2],
        ),
    ):
        server = grpc.aio.server()
        add(server)
        names = [svc.full_name for module in services for svc in module.DESCRIPTOR.services_by_name.values()]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        server.add_insecure_port(f"unix:{folder / name}.sock")
        await server.start()
        servers.append(server)
    registry = ComponentRegistry(socket_folders=[str(folder)])
    assert await registry.discover() == []
    try:
        yield Served(registry, queue)
    finally:
        for server in servers:
            await server.stop(None)


@pytest.fixture(scope="module")
async def channel(served: Served) -> AsyncIterator[grpc.aio.Channel]:
    config = {
        "secret_store": {"vault": {"type": "vault", "metadata": {}}},
        "bindings": {"queue": {"type": "queue", "metadata": {}}},
    }
    async with running_sidecar(config, served.registry) as (_, address), grpc.aio.insecure_channel(address) as opened:
        yield opened


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest, channel: grpc.aio.Channel) -> Api:
    return client(request.param, channel)


async def test_secret_store(api: Api) -> None:
    assert await api.get_secret("vault", "db") == {"user": "admin", "password": "pw"}
    assert await api.bulk_secret("vault") == SECRETS
    code, message = await failure(api.get_secret("vault", "nope"))
    expected = {
        LAYOTTO: "error when get secret : secret name => nope,store name =>vault,error => secret nope not found",
        DAPR: "failed getting secret with key nope from secret store vault: secret nope not found",
    }
    assert (code, message) == (grpc.StatusCode.INTERNAL, expected[api.name])


async def test_output_binding(api: Api) -> None:
    assert await api.invoke_binding("queue", "create", b"job") == (b"echo:job", {"op": "create"})
    code, message = await failure(api.invoke_binding("queue", "delete"))
    assert code == grpc.StatusCode.INTERNAL
    assert message.endswith("binding queue does not support operation delete. supported operations:create fail")
    code, message = await failure(api.invoke_binding("queue", "fail"))
    assert code == grpc.StatusCode.INTERNAL
    assert message.endswith(": the queue is full")


async def test_features_are_what_the_components_report_and_serve(served: Served) -> None:
    vault = served.registry.create("secretstores", "vault")
    queue = served.registry.create("bindings", "queue")
    await vault.init(Metadata({}), ComponentContext("v", "secretstores"))
    await queue.init(Metadata({}), ComponentContext("q", "bindings"))
    try:
        assert vault.features == {SecretStoreFeature.MULTIPLE_KEY_VALUES_PER_SECRET}
        assert queue.features == {BindingFeature.INPUT}  # it serves InputBinding
        assert isinstance(queue, OutputBinding) and queue.operations() == ["create", "fail"]
    finally:
        await vault.close()
        await queue.close()


async def test_input_binding_events_and_verdicts(served: Served) -> None:
    binding = served.registry.create("bindings", "queue")
    await binding.init(Metadata({}), ComponentContext("q", "bindings"))
    received: list[BindingEvent] = []

    async def handler(event: BindingEvent) -> bool:
        received.append(event)
        return event.data != b"refused"

    reading = await binding.read(handler)
    try:
        for data in (b"first", b"refused"):
            await served.queue.events.put(data)
        while len(served.queue.answers) < 2:
            served.queue.answered.clear()
            await asyncio.wait_for(served.queue.answered.wait(), WITHIN)
        assert [(e.data, e.metadata) for e in received] == [(b"first", {"n": "1"}), (b"refused", {"n": "2"})]
        assert served.queue.answers == {"m1": "", "m2": "the app did not take the event"}
    finally:
        await reading.close()
        await binding.close()
