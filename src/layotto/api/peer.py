"""daprd's internal gRPC listener (`--dapr-internal-grpc-port`): where other sidecars forward
their InvokeService calls, apart from the API port the app uses.

It serves that one method (any other answers UNIMPLEMENTED) and takes every call as forwarded:
delivered to this sidecar's app, never passed on to another, so whoever reaches the port can
reach this app and nothing else. With peer TLS (`PeerTls`) it serves this sidecar's
certificate and requires a client certificate of the peers' CA (docs/operations.md#tls).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc

from layotto.api.common import check_requests
from layotto.api.layotto.invoke import InvokeApi
from layotto.config.tls import PeerTls
from layotto.config.tls_grpc import grpc_server_credentials
from layotto.errors import ConfigError
from layotto.runtime.invoke import Invoker
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

__all__ = ["PeerListener"]

log = logging.getLogger("layotto.server")

_SERVICE = "spec.proto.runtime.v1.Runtime"


class _ForwardedInvoke(InvokeApi):
    def forwarded(self, metadata: tuple[tuple[str, Any], ...]) -> bool:
        return True


class PeerListener:
    """The internal listener on `address`: bound when made (a ConfigError when it cannot be, or
    when its certificates cannot be read), serving once `serve` gave it the invocation engine
    and `start` was awaited."""

    def __init__(
        self,
        address: str,
        tls: PeerTls | None,
        *,
        options: Sequence[tuple[str, Any]],
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]],
        source: str,
    ) -> None:
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
        check_requests(self.server)
        self.tls = tls
        try:
            if tls is None:
                self.port = self.server.add_insecure_port(address)
            else:
                if not tls.mutual:
                    raise ConfigError("the internal gRPC listener over TLS needs this sidecar's certificate", source)
                certs = tls.certificates()
                for warning in certs.material.warnings:
                    log.warning("%s", warning)
                credentials = grpc_server_credentials(certs, mutual=True)
                self.port = self.server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise ConfigError(f"the internal gRPC listener cannot listen on {address}: {exc}", source) from None
        if self.port == 0:
            raise ConfigError(f"the internal gRPC listener cannot listen on {address}: address in use", source)
        host = address.rpartition(":")[0]
        self.address = f"{host}:{self.port}"
        self._stopped = False

    def serve(self, invoker: Invoker) -> None:
        api = _ForwardedInvoke(invoker)
        handler = grpc.unary_unary_rpc_method_handler(
            api.InvokeService,
            request_deserializer=pb.InvokeServiceRequest.FromString,
            response_serializer=pb.InvokeResponse.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_SERVICE, {"InvokeService": handler}),)
        )

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float | None) -> None:
        """Take no more calls; those in flight finish, up to `grace` seconds. Once only."""
        if self._stopped:
            return
        self._stopped = True
        await self.server.stop(grace)
