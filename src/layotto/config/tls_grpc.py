"""gRPC credentials of the TLS settings (config/tls.py): the API listeners', the internal
listener's and the channels to other sidecars."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import grpc

from layotto.config.tls import Certificates, Material

log = logging.getLogger("layotto.tls")


def grpc_server_credentials(certs: Certificates, *, mutual: bool) -> grpc.ServerCredentials:
    """Credentials of a gRPC listener; gRPC asks before each handshake whether they changed."""

    def configuration(material: Material) -> grpc.ServerCertificateConfiguration:
        assert material.chain is not None and material.key is not None
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.chain)], root_certificates=material.ca if mutual else None
        )

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # None: no change. Called from gRPC's core, where an exception would end the handshake unlogged.
        try:
            return configuration(certs.material) if certs.refresh() else None
        except Exception:
            log.exception("reloading the listener's certificates failed")
            return None

    return grpc.dynamic_ssl_server_credentials(
        configuration(certs.material),
        cast(Callable[[], grpc.ServerCertificateConfiguration], fetch),
        require_client_authentication=mutual,
    )


def grpc_channel_credentials(material: Material) -> grpc.ChannelCredentials:
    """Channel credentials verifying the server against `material.ca`, presenting
    `material.chain` when there is one."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.chain
    )
