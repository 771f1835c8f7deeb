"""Secrets API: GetSecret and GetBulkSecret with the Layotto proto's responses."""

from __future__ import annotations

from layotto.api.secrets import SecretRpcs
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class SecretsApi(SecretRpcs):
    GET_RESPONSE = pb.GetSecretResponse
    BULK_RESPONSE = pb.GetBulkSecretResponse
