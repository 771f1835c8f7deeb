"""EmailService with the `smtp` component, against a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from layotto_proto.spec.proto.extension.v1.email import email_pb2 as pb
from layotto_proto.spec.proto.extension.v1.email import email_pb2_grpc
from tests.support.sidecar import free_port, running_sidecar


@dataclass
class Mailbox:
    received: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.put_nowait(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(mailbox, hostname="test.local"), "127.0.0.1", port)
    try:
        yield mailbox, port
    finally:
        server.close()
        await server.wait_closed()


TEMPLATES = {"welcome": {"subject": "Welcome, ${name}", "text": "Hello ${name}, your code is ${code}."}}


@pytest.fixture
async def stub(smtp_server: tuple[Mailbox, int]) -> AsyncIterator[email_pb2_grpc.EmailServiceStub]:
    _, port = smtp_server
    dead_port = free_port()
    config: dict[str, Any] = {
        "email": {
            "mail": {
                "type": "smtp",
                "metadata": {
                    "host": "127.0.0.1",
                    "port": str(port),
                    "defaultFrom": "noreply@example.com",
                    "templates": json.dumps(TEMPLATES),
                    "timeout": "5s",
                },
            },
            "down": {"type": "smtp", "metadata": {"host": "127.0.0.1", "port": str(dead_port), "timeout": "2s"}},
        }
    }
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield email_pb2_grpc.EmailServiceStub(channel)


def _parse(envelope: Envelope) -> email.message.EmailMessage:
    content = envelope.content
    assert isinstance(content, bytes)
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def test_send_email_headers_and_body(
    stub: email_pb2_grpc.EmailServiceStub, smtp_server: tuple[Mailbox, int]
) -> None:
    mailbox, _ = smtp_server
    subject = f"report {uuid.uuid4().hex}"
    address = pb.EmailAddress(to=["a@example.com", "b@example.com"], cc=["c@example.com"])
    setattr(address, "from", "ops@example.com")
    reply = await stub.SendEmail(
        pb.SendEmailRequest(
            component_name="mail", subject=subject, content=pb.Content(text="Grüße\nline two"), address=address
        )
    )
    envelope = await asyncio.wait_for(mailbox.received.get(), 10)
    assert envelope.mail_from == "ops@example.com"
    assert sorted(envelope.rcpt_tos) == ["a@example.com", "b@example.com", "c@example.com"]
    message = _parse(envelope)
    assert message["From"] == "ops@example.com"
    assert message["To"] == "a@example.com, b@example.com" and message["Cc"] == "c@example.com"
    assert message["Subject"] == subject and message["Date"]
    assert message["Message-ID"].strip("<>") == reply.request_id
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n").rstrip("\n") == "Grüße\nline two"


async def test_send_with_template(stub: email_pb2_grpc.EmailServiceStub, smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, _ = smtp_server
    reply = await stub.SendEmailWithTemplate(
        pb.SendEmailWithTemplateRequest(
            component_name="mail",
            template=pb.EmailTemplate(template_id="welcome", template_params={"name": "Ana", "code": "42"}),
            address=pb.EmailAddress(to=["ana@example.com"]),
        )
    )
    assert reply.request_id
    message = _parse(await asyncio.wait_for(mailbox.received.get(), 10))
    assert message["From"] == "noreply@example.com"  # the component's defaultFrom
    assert message["Subject"] == "Welcome, Ana"
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "Hello Ana, your code is 42."


async def test_errors(stub: email_pb2_grpc.EmailServiceStub, smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, _ = smtp_server
    to = pb.EmailAddress(to=["x@example.com"])
    cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (
            stub.SendEmail(pb.SendEmailRequest(component_name="nope", address=to)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "component not found. kind: email , name: nope",
        ),
        (
            stub.SendEmailWithTemplate(pb.SendEmailWithTemplateRequest(component_name="nope")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "component not found. kind: email , name: nope",
        ),
        (
            stub.SendEmail(pb.SendEmailRequest(component_name="mail", subject="s")),
            grpc.StatusCode.INTERNAL,
            "the e-mail has no recipient: address.to is empty",
        ),
        (
            stub.SendEmailWithTemplate(
                pb.SendEmailWithTemplateRequest(
                    component_name="mail",
                    template=pb.EmailTemplate(template_id="welcome", template_params={"name": "x"}),
                    address=to,
                )
            ),
            grpc.StatusCode.INTERNAL,
            "template 'welcome' needs parameter 'code'",
        ),
        (
            stub.SendEmailWithTemplate(
                pb.SendEmailWithTemplateRequest(
                    component_name="mail", template=pb.EmailTemplate(template_id="other"), address=to
                )
            ),
            grpc.StatusCode.INTERNAL,
            "template 'other' is not configured in email component mail",
        ),
    ]
    for call, code, details in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert (err.value.code(), err.value.details()) == (code, details)
    assert mailbox.received.empty()

    down = pb.EmailAddress(to=["x@example.com"])
    setattr(down, "from", "me@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SendEmail(pb.SendEmailRequest(component_name="down", subject="s", address=down))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "is unavailable" in str(err.value.details())
