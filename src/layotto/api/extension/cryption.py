"""CryptionService: Encrypt/Decrypt over `layotto.core.cryption`."""

from __future__ import annotations

from layotto.api.common import Answering, Ctx, answered
from layotto.api.extension.common import request_id
from layotto.components.cryption.base import Decrypted, Encrypted
from layotto.core.cryption import CryptionCore
from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2 as pb


def _key_fields(done: Encrypted | Decrypted) -> dict[str, str]:
    return {"key_id": done.key_id, "key_version_id": done.key_version_id, "request_id": request_id()}


class CryptionApi(Answering[CryptionCore]):
    @answered
    async def Encrypt(self, request: pb.EncryptRequest, context: Ctx) -> pb.EncryptResponse:
        done = await self.core.encrypt(request.component_name, request.plain_text, request.key_id)
        return pb.EncryptResponse(cipher_text=done.cipher_text, **_key_fields(done))

    @answered
    async def Decrypt(self, request: pb.DecryptRequest, context: Ctx) -> pb.DecryptResponse:
        done = await self.core.decrypt(request.component_name, request.cipher_text)
        return pb.DecryptResponse(plain_text=done.plain_text, **_key_fields(done))
