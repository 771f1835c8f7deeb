"""Upstream Layotto's own pluggable protocol: a `spec.proto.pluggable.v1.hello.Hello` component
(as mosn/layotto demo/pluggable/hello: a greeting from Init, a token check) on a socket in
`LAYOTTO_COMPONENTS_SOCKETS_FOLDER`, used by upstream's config (configs/config_hello_component.json:
`hellos.helloworld.type` is the socket's name) through the Layotto API's SayHello.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_reflection.v1alpha import reflection

from layotto.errors import ConfigError
from layotto.runtime.registry import ComponentRegistry
from layotto_proto.spec.proto.pluggable.v1.hello import hello_pb2, hello_pb2_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.pluggable_process import socket_folder
from tests.support.sidecar import SidecarProcess, running_sidecar

TOKEN = "123456"
#: Upstream's configs/config_hello_component.json, its `grpc_config`.
UPSTREAM = {"hellos": {"helloworld": {"type": "hello-grpc-demo", "hello": "hello", "metadata": {"token": TOKEN}}}}
Ctx = grpc.aio.ServicerContext[Any, Any]


@dataclass
class HelloDemo(hello_pb2_grpc.HelloServicer):
    """Upstream's demo component, remembering what it was given."""

    hello: str = ""
    inits: list[tuple[hello_pb2.HelloConfig, str]] = field(default_factory=list)

    async def Init(self, request: hello_pb2.HelloConfig, context: Ctx) -> empty_pb2.Empty:
        instance = dict(context.invocation_metadata() or ()).get("x-component-instance", "")
        self.inits.append((request, str(instance)))
        if request.metadata.get("token") != TOKEN:
            await context.abort(grpc.StatusCode.UNKNOWN, "auth failed")
        self.hello = request.hello_string
        return empty_pb2.Empty()

    async def SayHello(self, request: hello_pb2.HelloRequest, context: Ctx) -> hello_pb2.HelloResponse:
        return hello_pb2.HelloResponse(hello_string=self.hello)


@dataclass
class Served:
    folder: Path
    demo: HelloDemo
    server: grpc.aio.Server


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    folder = socket_folder()
    demo = HelloDemo()
    server = grpc.aio.server()
    hello_pb2_grpc.add_HelloServicer_to_server(demo, server)
    service = hello_pb2.DESCRIPTOR.services_by_name["Hello"].full_name
    reflection.enable_server_reflection([service, reflection.SERVICE_NAME], server)
    server.add_insecure_port(f"unix:{folder / 'hello-grpc-demo.sock'}")
    await server.start()
    try:
        yield Served(folder, demo, server)
    finally:
        await server.stop(None)


async def test_upstreams_config_and_folder_variable(served: Served) -> None:
    # A sidecar process, finding the socket through upstream's variable; this test's loop serves
    # the component meanwhile.
    sidecar = SidecarProcess(UPSTREAM, env={"LAYOTTO_COMPONENTS_SOCKETS_FOLDER": str(served.folder)})
    await asyncio.to_thread(sidecar.start)
    try:
        async with grpc.aio.insecure_channel(sidecar.address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            reply = await stub.SayHello(pb.SayHelloRequest(service_name="helloworld", name="x"))
            assert reply.hello == "hello"
    finally:
        assert await asyncio.to_thread(sidecar.terminate) == 0, sidecar.log()
    ((config, instance),) = served.demo.inits
    assert (config.type, config.hello_string, dict(config.metadata), instance) == (
        "hello-grpc-demo",
        "hello",
        {"token": TOKEN},
        "helloworld",
    )


async def test_refs_are_handed_over_and_a_refusing_init_fails_the_start(served: Served) -> None:
    registry = ComponentRegistry(socket_folders=[str(served.folder)])
    entry = {
        "type": "hello-grpc-demo",
        "hello": "hi",
        "metadata": {"token": "wrong"},
        "component_ref": {"secret_store": "vault", "config_store": "apollo"},
    }
    config = {
        "hellos": {"greeter": entry},
        "config_store": {"apollo": {"type": "in-memory", "metadata": {}}},
        "secret_store": {"vault": {"type": "local.env", "metadata": {}}},
    }
    with pytest.raises(ConfigError) as refused:
        async with running_sidecar(config, registry):
            pass
    assert "hello component 'greeter' (hello-grpc-demo) failed to start: auth failed" in str(refused.value)
    ((config, _),) = served.demo.inits
    assert (config.config.component_ref.secret_store, config.config.component_ref.config_store) == ("vault", "apollo")


async def test_a_hello_component_that_is_gone_is_unavailable(served: Served) -> None:
    registry = ComponentRegistry(socket_folders=[str(served.folder)])
    async with running_sidecar(UPSTREAM, registry) as (_, address), grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        assert (await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))).hello == "hello"
        await served.server.stop(None)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
        socket = served.folder / "hello-grpc-demo.sock"
        assert f"pluggable hello component 'helloworld' ({socket}) is unavailable" in (gone.value.details() or "")
