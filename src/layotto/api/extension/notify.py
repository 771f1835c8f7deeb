"""SmsService and PhoneCallService, one part serving both. No SMS or voice provider can be
reached from here, so no component type exists for either: every call names a component that is
not configured and gets upstream's not-found error (see `layotto.core.notify`)."""

from __future__ import annotations

from layotto.api.common import Answering, Ctx, answered
from layotto.core.notify import NotifyCore
from layotto_proto.spec.proto.extension.v1.phone import phone_pb2
from layotto_proto.spec.proto.extension.v1.sms import sms_pb2


class NotifyApi(Answering[NotifyCore]):
    @answered
    async def SendSmsWithTemplate(
        self, request: sms_pb2.SendSmsWithTemplateRequest, context: Ctx
    ) -> sms_pb2.SendSmsWithTemplateResponse:
        self.core.send("sms", request.component_name)

    @answered
    async def SendVoiceWithTemplate(
        self, request: phone_pb2.SendVoiceWithTemplateRequest, context: Ctx
    ) -> phone_pb2.SendVoiceWithTemplateResponse:
        self.core.send("phone", request.component_name)
