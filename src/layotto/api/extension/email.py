"""EmailService: SendEmail/SendEmailWithTemplate over `layotto.core.email`."""

from __future__ import annotations

from layotto.api.common import Answering, Ctx, answered
from layotto.components.email.base import Envelope
from layotto.core.email import EmailCore
from layotto_proto.spec.proto.extension.v1.email import email_pb2 as pb


def _envelope(address: pb.EmailAddress) -> Envelope:
    return Envelope(sender=getattr(address, "from"), to=list(address.to), cc=list(address.cc))


class EmailApi(Answering[EmailCore]):
    @answered
    async def SendEmail(self, request: pb.SendEmailRequest, context: Ctx) -> pb.SendEmailResponse:
        envelope = _envelope(request.address)
        message_id = await self.core.send(request.component_name, envelope, request.subject, request.content.text)
        return pb.SendEmailResponse(request_id=message_id)

    @answered
    async def SendEmailWithTemplate(
        self, request: pb.SendEmailWithTemplateRequest, context: Ctx
    ) -> pb.SendEmailWithTemplateResponse:
        template = request.template
        message_id = await self.core.send_template(
            request.component_name,
            _envelope(request.address),
            request.subject,
            template.template_id,
            dict(template.template_params),
        )
        return pb.SendEmailWithTemplateResponse(request_id=message_id)
