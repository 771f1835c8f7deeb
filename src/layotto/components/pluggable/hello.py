"""A hello component served by a pluggable component: Layotto's own protocol,
`spec.proto.pluggable.v1.hello.Hello` (mosn/layotto components/hello/pluggable.go).

Its entry is upstream's hello entry (`hellos` in Layotto JSON): `type` is the socket's name,
`hello` the greeting (HelloConfig.hello_string), `metadata` its own settings; its `secret_ref`s
and the names of the stores its `component_ref` names (which the runtime hands it, as to any
component that takes them) go to the component as written (HelloConfig.config).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from layotto.components.base import Component, ComponentContext, Metadata
from layotto.components.dynamic import SetComponent
from layotto.components.hello.base import HelloService
from layotto.components.pluggable.connection import INIT_TIMEOUT, PING_TIMEOUT, Connection, properties
from layotto.components.pluggable.discovery import HELLO
from layotto.errors import BackendUnavailableError
from layotto_proto.spec.proto.pluggable.v1.common import common_pb2
from layotto_proto.spec.proto.pluggable.v1.hello import hello_pb2 as pb

if TYPE_CHECKING:
    from layotto.components.configuration.base import ConfigurationStore
    from layotto.components.secretstores.base import SecretStore

#: The entry's greeting, beside its metadata in upstream's config (the loader keeps it there).
GREETING = "hello"


def _name(store: Component | None) -> str:
    return store.context.name if store is not None else ""


def _config(extras: Mapping[str, Any], config_store: str, secret_store: str) -> common_pb2.Config:
    refs = [
        common_pb2.SecretRefConfig(
            store_name=str(ref.get("store_name", "")),
            key=str(ref.get("key", "")),
            sub_key=str(ref.get("sub_key", "")),
            inject_as=str(ref.get("inject_as", "")),
        )
        for ref in extras.get("secret_ref") or []
    ]
    config = common_pb2.Config(secret_ref=refs)
    if config_store or secret_store:
        config.component_ref.config_store = config_store
        config.component_ref.secret_store = secret_store
    return config


class PluggableHello(HelloService, SetComponent):
    """The hello service of a component process on `socket`."""

    def __init__(self, socket: str, type_name: str, services: frozenset[str]) -> None:
        self.type_name = type_name
        self.services = services
        self.conn = Connection(socket, "hello")
        self._config_store: ConfigurationStore | None = None
        self._secret_store: SecretStore | None = None

    def set_config_store(self, store: ConfigurationStore) -> None:
        self._config_store = store

    def set_secret_store(self, store: SecretStore) -> None:
        self._secret_store = store

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.conn.open(context.name)
        settings = properties(metadata)
        greeting = settings.pop(GREETING, "")
        request = pb.HelloConfig(
            config=_config(context.extras, _name(self._config_store), _name(self._secret_store)),
            type=self.type_name,
            hello_string=greeting,
            metadata=settings,
        )
        await self.conn.unary(HELLO, "Init", request, empty_pb2.Empty, within=INIT_TIMEOUT)

    async def say_hello(self, name: str) -> str:
        reply = await self.conn.unary(HELLO, "SayHello", pb.HelloRequest(name=name), pb.HelloResponse)
        return reply.hello_string

    async def ping(self) -> None:
        # The Hello service has no Ping: a channel that connects is a component that is there.
        try:
            await asyncio.wait_for(self.conn.channel.channel_ready(), PING_TIMEOUT)
        except TimeoutError:
            raise BackendUnavailableError(f"{self.conn.what} does not answer") from None

    async def close(self) -> None:
        await self.conn.close()
