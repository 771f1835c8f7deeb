"""The standard gRPC health service (grpc.health.v1.Health) on the API port, so gRPC-native
probes (Kubernetes `grpc:` probes, grpc-health-probe, load balancers) see the sidecar's state:
SERVING once every component is up, NOT_SERVING from the moment it starts to drain on shutdown."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from layotto.api.common import Ctx, OpenStreams
from layotto.runtime.runtime import Runtime

#: The service names reported, besides the overall status ("").
SERVICES = ("spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr")

_NOT_SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)


# `health.aio` is the public name of the asyncio servicer; the package ships no stub for it.
class _Servicer(health.aio.HealthServicer):  # type: ignore[misc,name-defined]
    """grpc's servicer, whose Watch streams end when the sidecar drains: left open, each would
    hold the shutdown for the whole grace period."""

    def __init__(self) -> None:
        super().__init__()
        self.streams = OpenStreams()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Ctx) -> None:
        # The watcher's last word is NOT_SERVING, whether or not grpc's loop got to write it.
        async with self.streams.hold(context, farewell=_NOT_SERVING):
            await super().Watch(request, context)


class HealthService:
    def __init__(self, rt: Runtime) -> None:
        self.servicer: Any = _Servicer()

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *SERVICES):
            await self.servicer.set(name, status)

    async def start_api(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.SERVING)

    async def drain_api(self) -> None:
        """NOT_SERVING for good (later sets are ignored), then the Watch streams end."""
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.servicer.enter_graceful_shutdown()
        await self.servicer.streams.end_all()

    async def stop_api(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)


def register(server: grpc.aio.Server, rt: Runtime) -> HealthService:
    service = HealthService(rt)
    health_pb2_grpc.add_HealthServicer_to_server(service.servicer, server)
    return service
