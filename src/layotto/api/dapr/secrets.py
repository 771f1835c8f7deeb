"""Dapr Secrets API (GetSecret, GetBulkSecret) with daprd's codes and messages."""

from __future__ import annotations

from dapr.proto.runtime.v1 import secret_pb2 as pb

from layotto.api.common import find
from layotto.api.dapr.base import ApiBase, Ctx, abort, code_of
from layotto.components.secretstores.base import SecretStore
from layotto.errors import ComponentError


class DaprSecretsApi(ApiBase):
    _dapr_secrets: dict[str, SecretStore]

    async def start_api(self) -> None:
        self._dapr_secrets = {n: c for n, c in self.rt.components("secretstores").items() if isinstance(c, SecretStore)}

    async def _secret_store(self, name: str, context: Ctx) -> SecretStore:
        stores: dict[str, SecretStore] = getattr(self, "_dapr_secrets", {})
        return await find(
            stores,
            name,
            context,
            none_configured="secret store is not configured",
            not_found=f"failed finding secret store with key {name}",
        )

    async def GetSecret(self, request: pb.GetSecretRequest, context: Ctx) -> pb.GetSecretResponse:
        store = await self._secret_store(request.store_name, context)
        try:
            values = await store.get_secret(request.key, dict(request.metadata))
        except ComponentError as exc:
            await abort(
                context,
                code_of(exc),
                f"failed getting secret with key {request.key} from secret store {request.store_name}: {exc}",
            )
        return pb.GetSecretResponse(data=values)

    async def GetBulkSecret(self, request: pb.GetBulkSecretRequest, context: Ctx) -> pb.GetBulkSecretResponse:
        store = await self._secret_store(request.store_name, context)
        try:
            secrets = await store.bulk_get_secret(dict(request.metadata))
        except ComponentError as exc:
            await abort(context, code_of(exc), f"failed getting secrets from secret store {request.store_name}: {exc}")
        reply = pb.GetBulkSecretResponse()
        for name, values in secrets.items():
            reply.data[name].secrets.update(values)
        return reply
