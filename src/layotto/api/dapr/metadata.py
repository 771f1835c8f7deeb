"""Dapr's metadata API (GetMetadata, SetMetadata) and Shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf import empty_pb2

from layotto import __version__
from layotto.api.dapr.base import ApiBase, Ctx
from layotto.components.state.base import StateFeature
from layotto.config.model import BLOCKS
from layotto.runtime.runtime import Runtime
from layotto_proto.dapr.proto.runtime.v1 import dapr_pb2
from layotto_proto.dapr.proto.runtime.v1 import metadata_pb2 as pb

log = logging.getLogger("layotto.api.dapr")

_EMPTY = empty_pb2.Empty()
#: Our component features -> Dapr's capability names.
_CAPABILITIES = {
    StateFeature.ETAG: "ETAG",
    StateFeature.TRANSACTIONAL: "TRANSACTIONAL",
    StateFeature.TTL: "TTL",
    StateFeature.QUERY: "QUERY_API",
}


class DaprMetadata:
    """What Dapr's GetMetadata reports and the attributes SetMetadata adds, kept by this sidecar
    as daprd keeps them (in memory); one per sidecar, so Dapr's gRPC and HTTP APIs agree."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.extended: dict[str, str] = {}

    def _components(self) -> list[pb.RegisteredComponents]:
        out = []
        for block in BLOCKS:
            for name, component in self.rt.components(block).items():
                spec = self.rt.spec(block, name)
                extras = spec.extras if spec is not None else {}
                dapr_type = str(extras.get("dapr_type", "") or f"{block}.{spec.type if spec else ''}")
                version = str(extras.get("version", "") or "v1")
                capabilities = sorted(_CAPABILITIES[f] for f in component.features if f in _CAPABILITIES)
                out.append(
                    pb.RegisteredComponents(name=name, type=dapr_type, version=version, capabilities=capabilities)
                )
        return out

    def _subscriptions(self) -> list[pb.PubsubSubscription]:
        from layotto.runtime.delivery import DeliveryService

        out = []
        for service in self.rt.services:
            if isinstance(service, DeliveryService):
                for sub, _, _ in service.subscriptions:
                    metadata = {k: v for k, v in sub.metadata.items() if k != "deadLetterTopic"}
                    out.append(
                        pb.PubsubSubscription(
                            pubsub_name=sub.pubsub_name,
                            topic=sub.topic,
                            metadata=metadata,
                            dead_letter_topic=str(sub.metadata.get("deadLetterTopic", "")),
                            type=pb.PROGRAMMATIC,
                        )
                    )
        return out

    def response(self) -> pb.GetMetadataResponse:
        app = self.rt.config.app
        extended = dict(self.extended)
        extended.setdefault("daprRuntimeVersion", f"layotto-{__version__}")
        reply = pb.GetMetadataResponse(
            id=self.rt.app_id,
            registered_components=self._components(),
            extended_metadata=extended,
            subscriptions=self._subscriptions(),
            runtime_version=f"layotto-{__version__}",
        )
        if app.grpc_callback_port:
            reply.app_connection_properties.port = app.grpc_callback_port
            reply.app_connection_properties.protocol = "grpc"
            reply.app_connection_properties.channel_address = app.grpc_callback_host
        elif app.http_port:
            reply.app_connection_properties.port = app.http_port
            reply.app_connection_properties.protocol = "http"
            reply.app_connection_properties.channel_address = app.grpc_callback_host
        return reply


class DaprMetadataApi(ApiBase):
    def __init__(self, rt: Runtime, shutdown: Callable[[], None]) -> None:
        super().__init__(rt)
        self.metadata = DaprMetadata(rt)
        self._shutdown = shutdown

    async def start_api(self) -> None:
        self.metadata.extended.clear()

    async def GetMetadata(self, request: pb.GetMetadataRequest, context: Ctx) -> pb.GetMetadataResponse:
        return self.metadata.response()

    async def SetMetadata(self, request: pb.SetMetadataRequest, context: Ctx) -> empty_pb2.Empty:
        self.metadata.extended[request.key] = request.value
        return _EMPTY

    async def Shutdown(self, request: dapr_pb2.ShutdownRequest, context: Ctx) -> empty_pb2.Empty:
        """Answer, then stop the sidecar as SIGTERM does (drain calls, close components)."""
        log.info("Shutdown requested through the Dapr API")
        self._shutdown()
        return _EMPTY
