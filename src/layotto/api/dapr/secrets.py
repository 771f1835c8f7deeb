"""Dapr Secrets API: GetSecret and GetBulkSecret with the Dapr proto's responses."""

from __future__ import annotations

from layotto.api.secrets import SecretRpcs
from layotto_proto.dapr.proto.runtime.v1 import secret_pb2 as pb


class DaprSecretsApi(SecretRpcs):
    GET_RESPONSE = pb.GetSecretResponse
    BULK_RESPONSE = pb.GetBulkSecretResponse
