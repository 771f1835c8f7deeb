"""EmailService: SendEmail/SendEmailWithTemplate through an `email` component."""

from __future__ import annotations

from layotto.api.extension.common import ExtensionApi, code_of, component_not_found
from layotto.api.layotto.base import Ctx, abort
from layotto.components.email.base import EmailSender, Envelope
from layotto.errors import ComponentError
from layotto_proto.spec.proto.extension.v1.email import email_pb2 as pb
from layotto_proto.spec.proto.extension.v1.email import email_pb2_grpc as pb_grpc

KIND = "email"


def _envelope(address: pb.EmailAddress) -> Envelope:
    return Envelope(sender=getattr(address, "from"), to=list(address.to), cc=list(address.cc))


class EmailApi(ExtensionApi, pb_grpc.EmailServiceServicer):
    _components: dict[str, EmailSender]

    async def start_api(self) -> None:
        self._components = {n: c for n, c in self.rt.components(KIND).items() if isinstance(c, EmailSender)}

    async def _component(self, name: str, context: Ctx) -> EmailSender:
        component = self._components.get(name)
        if component is None:
            await component_not_found(context, KIND, name)
        return component

    async def SendEmail(self, request: pb.SendEmailRequest, context: Ctx) -> pb.SendEmailResponse:
        component = await self._component(request.component_name, context)
        try:
            message_id = await component.send(_envelope(request.address), request.subject, request.content.text)
        except ComponentError as exc:
            await abort(context, code_of(exc), str(exc))
        return pb.SendEmailResponse(request_id=message_id)

    async def SendEmailWithTemplate(
        self, request: pb.SendEmailWithTemplateRequest, context: Ctx
    ) -> pb.SendEmailWithTemplateResponse:
        component = await self._component(request.component_name, context)
        try:
            message_id = await component.send_template(
                _envelope(request.address),
                request.subject,
                request.template.template_id,
                dict(request.template.template_params),
            )
        except ComponentError as exc:
            await abort(context, code_of(exc), str(exc))
        return pb.SendEmailWithTemplateResponse(request_id=message_id)
