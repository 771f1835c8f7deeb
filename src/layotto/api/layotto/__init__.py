"""The Layotto API (spec.proto.runtime.v1.Runtime), one mixin per building block.

RPCs no mixin implements fall through to the generated base class, which answers
UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc

from layotto.api.layotto.base import ApiBase
from layotto.api.layotto.bindings import BindingsApi
from layotto.api.layotto.configuration import ConfigurationApi
from layotto.api.layotto.file import FileApi
from layotto.api.layotto.hello import HelloApi
from layotto.api.layotto.invoke import InvokeApi
from layotto.api.layotto.lock import LockApi
from layotto.api.layotto.pubsub import PubSubApi
from layotto.api.layotto.secrets import SecretsApi
from layotto.api.layotto.sequencer import SequencerApi
from layotto.api.layotto.state import StateApi
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from layotto.runtime.runtime import Runtime

#: One line per block. Order does not matter: each mixin defines distinct RPCs.
MIXINS: tuple[type[ApiBase], ...] = (
    HelloApi,
    StateApi,
    LockApi,
    SequencerApi,
    PubSubApi,
    ConfigurationApi,
    SecretsApi,
    BindingsApi,
    InvokeApi,
    FileApi,
)


class RuntimeService(*MIXINS, runtime_pb2_grpc.RuntimeServicer):  # type: ignore[misc]
    """The composed servicer."""

    async def start_api(self) -> None:
        for mixin in MIXINS:
            await mixin.start_api(self)

    async def stop_api(self) -> None:
        for mixin in MIXINS:
            await mixin.stop_api(self)


def register(server: grpc.aio.Server, rt: Runtime) -> RuntimeService:
    service = RuntimeService(rt)
    runtime_pb2_grpc.add_RuntimeServicer_to_server(service, server)
    return service
