"""SmsService. No SMS provider can be reached from here, so no `sms` component type exists yet:
every call names a component that is not configured and gets upstream's not-found error."""

from __future__ import annotations

from layotto.api.extension.common import ExtensionApi, component_not_found
from layotto.api.layotto.base import Ctx
from layotto_proto.spec.proto.extension.v1.sms import sms_pb2 as pb
from layotto_proto.spec.proto.extension.v1.sms import sms_pb2_grpc as pb_grpc

KIND = "sms"


class SmsApi(ExtensionApi, pb_grpc.SmsServiceServicer):
    async def SendSmsWithTemplate(
        self, request: pb.SendSmsWithTemplateRequest, context: Ctx
    ) -> pb.SendSmsWithTemplateResponse:
        await component_not_found(context, KIND, request.component_name)
