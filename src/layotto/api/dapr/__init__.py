"""Dapr's gRPC API (dapr.proto.runtime.v1.Dapr), served on the same port as the Layotto API
and mapped onto the same components: one store, two APIs.

RPCs no mixin implements (actors, workflows, jobs, crypto, ...) fall through to the
generated base class, which answers UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc

from layotto.api.dapr.base import ApiBase
from layotto.api.dapr.bindings import DaprBindingsApi
from layotto.api.dapr.configuration import DaprConfigurationApi
from layotto.api.dapr.invoke import DaprInvokeApi
from layotto.api.dapr.lock import DaprLockApi
from layotto.api.dapr.metadata import DaprMetadataApi
from layotto.api.dapr.pubsub import DaprPubSubApi
from layotto.api.dapr.secrets import DaprSecretsApi
from layotto.api.dapr.state import DaprStateApi
from layotto.runtime.runtime import Runtime

from dapr.proto.runtime.v1 import dapr_pb2_grpc  # isort: skip  (after base: it silences dapr's import warning)

MIXINS: tuple[type[ApiBase], ...] = (
    DaprStateApi,
    DaprPubSubApi,
    DaprSecretsApi,
    DaprBindingsApi,
    DaprLockApi,
    DaprConfigurationApi,
    DaprInvokeApi,
    DaprMetadataApi,
)


class DaprService(*MIXINS, dapr_pb2_grpc.DaprServicer):  # type: ignore[misc]
    """The composed servicer."""

    async def start_api(self) -> None:
        for mixin in MIXINS:
            await mixin.start_api(self)

    async def stop_api(self) -> None:
        for mixin in MIXINS:
            await mixin.stop_api(self)


def register(server: grpc.aio.Server, rt: Runtime) -> DaprService:
    from layotto.api.dapr import appchannel

    appchannel.install()
    service = DaprService(rt)
    dapr_pb2_grpc.add_DaprServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    return service
