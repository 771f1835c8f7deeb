"""Secrets API: GetSecret / GetBulkSecret with upstream Layotto's codes and messages."""

from __future__ import annotations

import grpc

from layotto.api.common import Answering, Answers, Ctx, answered, failure_code
from layotto.core.secrets import SecretsCore
from layotto.core.secrets import SecretsProblem as P
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

Code = grpc.StatusCode


class SecretsApi(Answering[SecretsCore]):
    ANSWERS: Answers = {
        P.NO_STORES: (Code.FAILED_PRECONDITION, "error when get secret but not find configured"),
        P.STORE_NOT_FOUND: (Code.INVALID_ARGUMENT, "error when get secret but not find : {store}"),
        P.GET_FAILED: (
            failure_code,
            "error when get secret : secret name => {key},store name =>{store},error => {error}",
        ),
        P.BULK_GET_FAILED: (failure_code, "error when bulk get secret {store}: {error}"),
    }


    @answered
    async def GetSecret(self, request: pb.GetSecretRequest, context: Ctx) -> pb.GetSecretResponse:
        data = await self.core.get(request.store_name, request.key, dict(request.metadata))
        return pb.GetSecretResponse(data=data)

    @answered
    async def GetBulkSecret(self, request: pb.GetBulkSecretRequest, context: Ctx) -> pb.GetBulkSecretResponse:
        secrets = await self.core.bulk_get(request.store_name, dict(request.metadata))
        return pb.GetBulkSecretResponse(data={k: pb.SecretResponse(secrets=v) for k, v in secrets.items()})
