"""Secrets API: GetSecret / GetBulkSecret with upstream Layotto's codes and messages."""

from __future__ import annotations

from layotto.api.common import failure_code, find
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.secretstores.base import SecretStore
from layotto.errors import ComponentError
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class SecretsApi(ApiBase):
    _secret_stores: dict[str, SecretStore]

    async def start_api(self) -> None:
        self._secret_stores = {
            name: c for name, c in self.rt.components("secretstores").items() if isinstance(c, SecretStore)
        }

    async def _secret_store(self, name: str, context: Ctx) -> SecretStore:
        stores: dict[str, SecretStore] = getattr(self, "_secret_stores", {})
        return await find(
            stores,
            name,
            context,
            none_configured="error when get secret but not find configured",
            not_found=f"error when get secret but not find : {name}",
        )

    async def GetSecret(self, request: pb.GetSecretRequest, context: Ctx) -> pb.GetSecretResponse:
        store = await self._secret_store(request.store_name, context)
        try:
            data = await store.get_secret(request.key, dict(request.metadata))
        except ComponentError as exc:
            await abort(
                context,
                failure_code(exc),
                f"error when get secret : secret name => {request.key},store name =>{request.store_name},"
                f"error => {exc}",
            )
        return pb.GetSecretResponse(data=data)

    async def GetBulkSecret(self, request: pb.GetBulkSecretRequest, context: Ctx) -> pb.GetBulkSecretResponse:
        store = await self._secret_store(request.store_name, context)
        try:
            secrets = await store.bulk_get_secret(dict(request.metadata))
        except ComponentError as exc:
            await abort(context, failure_code(exc), f"error when bulk get secret {request.store_name}: {exc}")
        return pb.GetBulkSecretResponse(data={k: pb.SecretResponse(secrets=v) for k, v in secrets.items()})
