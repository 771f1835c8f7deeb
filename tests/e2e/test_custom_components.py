"""Upstream Layotto's extension points beside the blocks: custom components (`custom_component`,
found by kind through the runtime and served here by `helloworld.Greeter`), `component_ref`
(stores handed to a component before its init) and Lifecycle.ApplyConfiguration on any
component that takes new metadata."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from layotto.api.extension.helloworld import SERVICE, _messages
from layotto.components.base import ComponentContext, Metadata
from layotto.components.configuration.base import ConfigurationStore, GetRequest
from layotto.components.dynamic import SetComponent
from layotto.components.hello.helloworld import HelloWorld
from layotto.components.secretstores.base import SecretStore
from layotto.components.state.memory import InMemoryStateStore
from layotto.config import layotto_json
from layotto.errors import ConfigError
from layotto.runtime.registry import ComponentRegistry
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import lifecycle_pb2 as lpb
from layotto_proto.spec.proto.runtime.v1 import lifecycle_pb2_grpc, runtime_pb2_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from tests.support.sidecar import free_port, layotto_config, running_sidecar

PREFIX = f"LAYOTTO_TEST_{uuid.uuid4().hex[:8].upper()}_"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local.env secret store's prefix, with secrets GREETING and OTHER under it."""
    monkeypatch.setenv(PREFIX + "GREETING", "Salut")
    monkeypatch.setenv(PREFIX + "OTHER", "other")
    monkeypatch.setenv("ALT_" + PREFIX + "GREETING", "Ahoy")
    yield PREFIX


@contextlib.asynccontextmanager
async def greeter(address: str) -> AsyncIterator[Any]:
    request, reply = _messages()
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/SayHello", request_serializer=request.SerializeToString, response_deserializer=reply.FromString
        )

        async def say(name: str) -> str:
            message: str = (await call(request(name=name))).message
            return message

        yield say


def apply(kind: str, name: str, **metadata: str) -> lpb.DynamicConfiguration:
    return lpb.DynamicConfiguration(component_config=lpb.ComponentConfig(kind=kind, name=name, metadata=metadata))


async def test_a_custom_component_is_built_and_served_by_the_api_of_its_kind(secrets: str) -> None:
    grpc_config = {
        "secret_store": {"env": {"type": "local.env", "metadata": {"prefix": secrets}}},
        "custom_component": {
            "helloworld": {
                "demo": {
                    "type": "in-memory",
                    "metadata": {"greetingSecret": "GREETING"},
                    "component_ref": {"secret_store": "env"},
                },
                "bye": {"type": "goodbye", "metadata": {}},
            },
            # As upstream: a kind nothing registers is skipped with a warning.
            "nosuchkind": {"x": {"type": "in-memory"}},
        },
    }
    async with running_sidecar(grpc_config) as (sidecar, address), greeter(address) as say:
        # The greeting came from the secret store its component_ref names, at init.
        assert await say("bob") == "Salut bob"
        assert set(sidecar.rt.custom("helloworld")) == {"demo", "bye"}
        assert sidecar.rt.custom("nosuchkind") == {}
        assert any("custom component kind 'nosuchkind' is not supported" in w for w in sidecar.config.warnings)
        bye = sidecar.rt.custom("helloworld")["bye"]
        assert await bye.say_hello("bob") == "Goodbye bob"  # type: ignore[attr-defined]
        # Lifecycle.ApplyConfiguration reaches a custom component by `custom_component.<kind>`.
        async with grpc.aio.insecure_channel(address) as channel:
            lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
            await lifecycle.ApplyConfiguration(apply("custom_component.helloworld", "demo", greeting="Hola"))
            assert await say("bob") == "Hola bob"
            with pytest.raises(grpc.aio.AioRpcError) as wrong_kind:
                await lifecycle.ApplyConfiguration(apply("custom_component.other", "demo", greeting="x"))
        assert wrong_kind.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert wrong_kind.value.details() == "component not found. kind: custom_component.other , name: demo"


async def test_without_a_demo_component_the_greeter_refuses_as_upstream_does() -> None:
    grpc_config = {"custom_component": {"helloworld": {"other": {"type": "in-memory"}}}}
    async with running_sidecar(grpc_config) as (_, address), greeter(address) as say:
        assert await say("bob") == "We don't want to talk with you!"


async def test_an_unknown_custom_type_of_a_known_kind_stops_the_start() -> None:
    with pytest.raises(ConfigError) as refused:
        async with running_sidecar({"custom_component": {"helloworld": {"demo": {"type": "nosuch"}}}}):
            pass
    assert "custom component type 'nosuch' of kind 'helloworld' is not registered (known: goodbye, in-memory)" in str(
        refused.value
    )
    assert "custom_component.helloworld.demo" in str(refused.value)


async def test_apply_configuration_reaches_a_secret_store(secrets: str) -> None:
    grpc_config = {"secret_store": {"env": {"type": "local.env", "metadata": {"prefix": secrets}}}}
    async with running_sidecar(grpc_config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        runtime = runtime_pb2_grpc.RuntimeStub(channel)
        lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
        got = await runtime.GetSecret(pb.GetSecretRequest(store_name="env", key="GREETING"))
        assert dict(got.data) == {"GREETING": "Salut"}
        await lifecycle.ApplyConfiguration(apply("secret_store", "env", prefix="ALT_" + secrets))
        got = await runtime.GetSecret(pb.GetSecretRequest(store_name="env", key="GREETING"))
        assert dict(got.data) == {"GREETING": "Ahoy"}
        # The block name of Dapr's manifests is taken as the kind too.
        await lifecycle.ApplyConfiguration(apply("secretstores", "env", allowedSecrets="OTHER", prefix=secrets))
        got = await runtime.GetSecret(pb.GetSecretRequest(store_name="env", key="GREETING"))
        assert dict(got.data) == {"GREETING": ""}


async def test_apply_configuration_refuses_a_component_that_takes_no_new_metadata() -> None:
    grpc_config = {"state": {"store": {"type": "in-memory"}}}
    async with running_sidecar(grpc_config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lifecycle.ApplyConfiguration(apply("state", "store", a="b"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "component not found. kind: state , name: store"
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await lifecycle.ApplyConfiguration(apply("state", "store"))
        assert empty.value.details() == "field metadata is not configured"


class RefProbe(InMemoryStateStore, SetComponent):
    """A state store that takes both stores and reads each one in init."""

    seen: dict[str, object]

    def set_config_store(self, store: ConfigurationStore) -> None:
        self.config_store = store

    def set_secret_store(self, store: SecretStore) -> None:
        self.secret_store = store

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.seen = {
            "secret": await self.secret_store.get_secret("GREETING", {}),
            "config": await self.config_store.get(GetRequest(context.app_id, "default", "default", ["k"])),
            "password": metadata.get_str("password"),
        }


@contextlib.asynccontextmanager
async def sidecar_with(grpc_config: dict[str, Any]) -> AsyncIterator[Sidecar]:
    registry = ComponentRegistry({("state", "ref-probe"): RefProbe})
    cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=free_port()), source="<test>")
    sidecar = Sidecar(cfg, registry)
    await sidecar.start()
    try:
        yield sidecar
    finally:
        await sidecar.stop()


async def test_component_ref_hands_the_stores_to_the_component_before_its_init(secrets: str) -> None:
    grpc_config = {
        # Listed first, and still started after the stores it references.
        "state": {
            "probe": {
                "type": "ref-probe",
                "component_ref": {"config_store": "config", "secret_store": "env"},
                "secret_ref": [{"store_name": "env", "key": "OTHER", "inject_as": "password"}],
            }
        },
        "config_store": {"config": {"type": "in-memory"}},
        "secret_store": {"env": {"type": "local.env", "metadata": {"prefix": secrets}}},
    }
    async with sidecar_with(grpc_config) as sidecar:
        probe = sidecar.rt.get("state", "probe")
        assert isinstance(probe, RefProbe)
        assert probe.config_store is sidecar.rt.get("configuration", "config")
        assert probe.secret_store is sidecar.rt.get("secretstores", "env")
        assert probe.seen == {"secret": {"GREETING": "Salut"}, "config": [], "password": "other"}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"config_store": "nope"}, "component_ref.config_store names unknown config store 'nope'"),
        ({"secret_store": "nope"}, "component_ref.secret_store names unknown secret store 'nope'"),
    ],
)
async def test_an_unknown_component_ref_stops_the_start_naming_the_entry(ref: dict[str, str], message: str) -> None:
    grpc_config = {"state": {"probe": {"type": "ref-probe", "component_ref": ref}}}
    with pytest.raises(ConfigError) as refused:
        async with sidecar_with(grpc_config):
            pass
    assert message in str(refused.value)
    assert "grpc_config.state.probe" in str(refused.value)


async def test_references_in_a_cycle_stop_the_start(secrets: str) -> None:
    grpc_config = {
        "secret_store": {
            "a": {"type": "local.env", "metadata": {"prefix": secrets}, "component_ref": {"config_store": "c"}},
        },
        "config_store": {
            "c": {"type": "in-memory", "secret_ref": [{"store_name": "a", "key": "GREETING"}]},
        },
    }
    with pytest.raises(ConfigError) as refused:
        async with sidecar_with(grpc_config):
            pass
    assert "component references form a cycle: secretstores 'a' -> configuration 'c' -> secretstores 'a'" in str(
        refused.value
    )


async def test_upstream_config_ref_example_shape_hands_both_stores_to_helloworld(secrets: str) -> None:
    """configs/config_ref_example.json's hellos entry (its etcd config store made in-memory)."""
    grpc_config = {
        "hellos": {
            "helloworld": {
                "type": "helloworld",
                "hello": "greeting",
                "secret_ref": [{"store_name": "local.env", "key": "GREETING", "sub_key": "GREETING", "inject_as": "x"}],
                "component_ref": {"config_store": "config_demo", "secret_store": "local.env"},
            }
        },
        "config_store": {"config_demo": {"type": "in-memory"}},
        "secret_store": {"local.env": {"type": "local.env", "metadata": {"prefix": secrets}}},
    }
    async with running_sidecar(grpc_config) as (sidecar, address):
        hello = sidecar.rt.get("hello", "helloworld")
        assert isinstance(hello, HelloWorld)
        assert hello.config_store is sidecar.rt.get("configuration", "config_demo")
        assert hello.secret_store is sidecar.rt.get("secretstores", "local.env")
        async with grpc.aio.insecure_channel(address) as channel:
            lifecycle = lifecycle_pb2_grpc.LifecycleStub(channel)
            await lifecycle.ApplyConfiguration(apply("hellos", "helloworld", hello="bonjour"))
            runtime = runtime_pb2_grpc.RuntimeStub(channel)
            reply = await runtime.SayHello(pb.SayHelloRequest(service_name="helloworld", name="bob"))
        assert reply.hello == "bonjour, bob"
