"""A secret store served by a pluggable component (Dapr's SecretStore service), mapped as daprd
maps it (dapr/dapr pkg/components/secretstores/pluggable.go). NOT_FOUND is a missing secret."""

from __future__ import annotations

from collections.abc import Mapping

from layotto.components.base import ComponentContext, Metadata
from layotto.components.pluggable.connection import (
    INIT_TIMEOUT,
    PING_TIMEOUT,
    Connection,
    features_of,
    properties,
)
from layotto.components.pluggable.discovery import SECRET_STORE
from layotto.components.secretstores.base import SecretStore, SecretStoreFeature
from layotto_proto.dapr.proto.components.v1 import common_pb2
from layotto_proto.dapr.proto.components.v1 import secretstore_pb2 as pb

FEATURES: Mapping[str, SecretStoreFeature] = {
    "MULTIPLE_KEY_VALUES_PER_SECRET": SecretStoreFeature.MULTIPLE_KEY_VALUES_PER_SECRET,
}


class PluggableSecretStore(SecretStore):
    """The secret store of a component process on `socket`."""

    def __init__(self, socket: str, type_name: str, services: frozenset[str]) -> None:
        self.type_name = type_name
        self.services = services
        self.conn = Connection(socket, "secretstores")
        self.features = frozenset()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.conn.open(context.name)
        request = pb.SecretStoreInitRequest(metadata=common_pb2.MetadataRequest(properties=properties(metadata)))
        await self.conn.unary(SECRET_STORE, "Init", request, pb.SecretStoreInitResponse, within=INIT_TIMEOUT)
        reply = await self.conn.unary(
            SECRET_STORE, "Features", common_pb2.FeaturesRequest(), common_pb2.FeaturesResponse, within=INIT_TIMEOUT
        )
        self.features = features_of(reply.features, FEATURES, self.conn.what)

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        request = pb.GetSecretRequest(key=key, metadata=dict(metadata))
        reply = await self.conn.unary(SECRET_STORE, "Get", request, pb.GetSecretResponse)
        return dict(reply.data)

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        request = pb.BulkGetSecretRequest(metadata=dict(metadata))
        reply = await self.conn.unary(SECRET_STORE, "BulkGet", request, pb.BulkGetSecretResponse)
        return {name: dict(secret.secrets) for name, secret in reply.data.items()}

    async def ping(self) -> None:
        await self.conn.unary(
            SECRET_STORE, "Ping", common_pb2.PingRequest(), common_pb2.PingResponse, within=PING_TIMEOUT
        )

    async def close(self) -> None:
        await self.conn.close()
