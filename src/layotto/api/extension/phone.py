"""PhoneCallService. No voice provider can be reached from here, so no `phone` component type
exists yet: every call gets upstream's not-found error."""

from __future__ import annotations

from layotto.api.extension.common import ExtensionApi, component_not_found
from layotto.api.layotto.base import Ctx
from layotto_proto.spec.proto.extension.v1.phone import phone_pb2 as pb
from layotto_proto.spec.proto.extension.v1.phone import phone_pb2_grpc as pb_grpc

KIND = "phone"


class PhoneApi(ExtensionApi, pb_grpc.PhoneCallServiceServicer):
    async def SendVoiceWithTemplate(
        self, request: pb.SendVoiceWithTemplateRequest, context: Ctx
    ) -> pb.SendVoiceWithTemplateResponse:
        await component_not_found(context, KIND, request.component_name)
