"""Dapr Secrets API (GetSecret, GetBulkSecret) with daprd's codes and messages."""

from __future__ import annotations

import grpc
from dapr.proto.runtime.v1 import secret_pb2 as pb

from layotto.api.common import Answering, Answers, Ctx, answered
from layotto.api.dapr.base import code_of
from layotto.core.secrets import SecretsCore
from layotto.core.secrets import SecretsProblem as P

Code = grpc.StatusCode


class DaprSecretsApi(Answering[SecretsCore]):
    ANSWERS: Answers = {
        P.NO_STORES: (Code.FAILED_PRECONDITION, "secret store is not configured"),
        P.STORE_NOT_FOUND: (Code.INVALID_ARGUMENT, "failed finding secret store with key {store}"),
        P.GET_FAILED: (code_of, "failed getting secret with key {key} from secret store {store}: {error}"),
        P.BULK_GET_FAILED: (code_of, "failed getting secrets from secret store {store}: {error}"),
    }


    @answered
    async def GetSecret(self, request: pb.GetSecretRequest, context: Ctx) -> pb.GetSecretResponse:
        values = await self.core.get(request.store_name, request.key, dict(request.metadata))
        return pb.GetSecretResponse(data=values)

    @answered
    async def GetBulkSecret(self, request: pb.GetBulkSecretRequest, context: Ctx) -> pb.GetBulkSecretResponse:
        secrets = await self.core.bulk_get(request.store_name, dict(request.metadata))
        reply = pb.GetBulkSecretResponse()
        for name, values in secrets.items():
            reply.data[name].secrets.update(values)
        return reply
