"""CryptionService: Encrypt/Decrypt through a `cryption` component."""

from __future__ import annotations

from layotto.api.extension.common import ExtensionApi, code_of, component_not_found, request_id
from layotto.api.layotto.base import Ctx, abort
from layotto.components.cryption.base import Cryption
from layotto.errors import ComponentError
from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2 as pb
from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2_grpc as pb_grpc

KIND = "cryption"


class CryptionApi(ExtensionApi, pb_grpc.CryptionServiceServicer):
    _components: dict[str, Cryption]

    async def start_api(self) -> None:
        self._components = {n: c for n, c in self.rt.components(KIND).items() if isinstance(c, Cryption)}

    async def _component(self, name: str, context: Ctx) -> Cryption:
        component = self._components.get(name)
        if component is None:
            await component_not_found(context, KIND, name)
        return component

    async def Encrypt(self, request: pb.EncryptRequest, context: Ctx) -> pb.EncryptResponse:
        component = await self._component(request.component_name, context)
        try:
            result = await component.encrypt(request.plain_text, request.key_id)
        except ComponentError as exc:
            await abort(context, code_of(exc), str(exc))
        return pb.EncryptResponse(
            cipher_text=result.cipher_text,
            key_id=result.key_id,
            key_version_id=result.key_version_id,
            request_id=request_id(),
        )

    async def Decrypt(self, request: pb.DecryptRequest, context: Ctx) -> pb.DecryptResponse:
        component = await self._component(request.component_name, context)
        try:
            result = await component.decrypt(request.cipher_text)
        except ComponentError as exc:
            await abort(context, code_of(exc), str(exc))
        return pb.DecryptResponse(
            plain_text=result.plain_text,
            key_id=result.key_id,
            key_version_id=result.key_version_id,
            request_id=request_id(),
        )
