"""GetSecret and GetBulkSecret of both gRPC APIs over `layotto.core.secrets`: the messages have
the same fields in Layotto's and Dapr's protos (a bulk reply maps each secret's name to a
`SecretResponse` of its values)."""

from __future__ import annotations

from typing import Any, ClassVar

from layotto.api.common import Answering, Ctx, answered
from layotto.core.secrets import SecretsCore

__all__ = ["SecretRpcs"]


class SecretRpcs(Answering[SecretsCore]):
    GET_RESPONSE: ClassVar[Any]
    BULK_RESPONSE: ClassVar[Any]

    @answered
    async def GetSecret(self, request: Any, context: Ctx) -> Any:
        values = await self.core.get(request.store_name, request.key, dict(request.metadata))
        return self.GET_RESPONSE(data=values)

    @answered
    async def GetBulkSecret(self, request: Any, context: Ctx) -> Any:
        secrets = await self.core.bulk_get(request.store_name, dict(request.metadata))
        reply = self.BULK_RESPONSE()
        for name, values in secrets.items():
            reply.data[name].secrets.update(values)
        return reply
