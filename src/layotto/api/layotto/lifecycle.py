"""Lifecycle.ApplyConfiguration: change a running component's settings (upstream: hellos)."""

from __future__ import annotations

import grpc

from layotto.api.layotto.base import Ctx, abort
from layotto.components.hello.base import HelloService
from layotto.runtime.runtime import Runtime
from layotto_proto.spec.proto.runtime.v1 import lifecycle_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import lifecycle_pb2_grpc

#: Upstream config keys (the `kind` a client sends) -> our block names.
_KINDS = {"hellos": "hello"}


class LifecycleService(lifecycle_pb2_grpc.LifecycleServicer):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def ApplyConfiguration(self, request: pb.DynamicConfiguration, context: Ctx) -> pb.ApplyConfigurationResponse:
        config = request.component_config
        for field in ("kind", "name", "metadata"):
            if not getattr(config, field):
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"field {field} is not configured")
        component = self.rt.get(_KINDS.get(config.kind, config.kind), config.name)
        if not isinstance(component, HelloService):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"component not found. kind: {config.kind} , name: {config.name}",
            )
        component.apply_configuration(dict(config.metadata))
        return pb.ApplyConfigurationResponse()

    async def start_api(self) -> None:
        pass

    async def stop_api(self) -> None:
        pass


def register(server: grpc.aio.Server, rt: Runtime) -> LifecycleService:
    service = LifecycleService(rt)
    lifecycle_pb2_grpc.add_LifecycleServicer_to_server(service, server)
    return service
