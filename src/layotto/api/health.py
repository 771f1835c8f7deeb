"""The standard gRPC health service (grpc.health.v1.Health) on the API port, so gRPC-native
probes (Kubernetes `grpc:` probes, grpc-health-probe, load balancers) see the sidecar's state:
SERVING once every component is up, NOT_SERVING while it drains on shutdown."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from layotto.runtime.runtime import Runtime

#: The service names reported, besides the overall status ("").
SERVICES = ("spec.proto.runtime.v1.Runtime", "dapr.proto.runtime.v1.Dapr")


class HealthService:
    def __init__(self, rt: Runtime) -> None:
        # `health.aio` is the public name of the asyncio servicer; the package ships no stub for it.
        self.servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *SERVICES):
            await self.servicer.set(name, status)

    async def start_api(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.SERVING)

    async def stop_api(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)


def register(server: grpc.aio.Server, rt: Runtime) -> HealthService:
    service = HealthService(rt)
    health_pb2_grpc.add_HealthServicer_to_server(service.servicer, server)
    return service
