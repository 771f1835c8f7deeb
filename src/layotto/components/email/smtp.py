"""`smtp` e-mail: sends through an SMTP server with aiosmtplib.

Metadata:
  host (required), port (25; 465 with useTLS), username, password,
  useTLS (implicit TLS, false), startTLS ("auto": upgrade when the server offers it; true; false),
  timeout (10s), defaultFrom (used when a request has no sender),
  templates: JSON {"<template id>": {"subject": "...", "text": "..."}} with ${param} placeholders,
  used by SendEmailWithTemplate (a request's own subject wins over the template's).

Every send opens its own connection: e-mail is rare next to its cost, and a connection left
open would need its own reconnect logic for servers that drop idle clients.
"""

from __future__ import annotations

import json
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from string import Template
from typing import Any

import aiosmtplib

from layotto.components.base import ComponentContext, Metadata
from layotto.components.email.base import EmailSender, Envelope
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError, InvalidArgumentError


class SmtpEmail(EmailSender):
    metadata_keys = (
        "host",
        "port",
        "useTLS",
        "startTLS",
        "username",
        "password",
        "timeout",
        "defaultFrom",
        "templates",
    )

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._host = metadata.required("host")
        self._tls = metadata.get_bool("useTLS", False)
        self._port = metadata.get_int("port", 465 if self._tls else 25)
        start_tls = metadata.get_str("startTLS", "auto").strip().lower()
        self._start_tls: bool | None = None if start_tls in ("", "auto") else metadata.get_bool("startTLS")
        self._username = metadata.get_str("username") or None
        self._password = metadata.get_str("password") or None
        self._timeout = metadata.get_duration("timeout", 10.0)
        self._default_from = metadata.get_str("defaultFrom")
        self._templates = self._load_templates(metadata)

    @staticmethod
    def _load_templates(metadata: Metadata) -> dict[str, dict[str, str]]:
        if "templates" not in metadata:
            return {}
        raw: Any = metadata["templates"]
        where = f"{metadata.where}.metadata.templates"
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"'templates' is not JSON: {exc.msg}", where) from None
        if not isinstance(raw, dict) or not all(isinstance(t, dict) for t in raw.values()):
            raise ConfigError("'templates' must map template ids to {subject, text}", where)
        return {str(k): {"subject": str(v.get("subject", "")), "text": str(v.get("text", ""))} for k, v in raw.items()}

    async def send(self, envelope: Envelope, subject: str, text: str) -> str:
        sender = envelope.sender or self._default_from
        if not sender:
            raise InvalidArgumentError("the e-mail has no sender: set address.from or the component's defaultFrom")
        if not envelope.to:
            raise InvalidArgumentError("the e-mail has no recipient: address.to is empty")
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(envelope.to)
        if envelope.cc:
            message["Cc"] = ", ".join(envelope.cc)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message_id = make_msgid(idstring=uuid.uuid4().hex[:12], domain=sender.rpartition("@")[2] or None)
        message["Message-ID"] = message_id
        message.set_content(text)
        try:
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=[*envelope.to, *envelope.cc],
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._tls,
                start_tls=self._start_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(r.recipient for r in exc.recipients)
            raise InvalidArgumentError(f"the smtp server refused recipients: {refused}") from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            raise BackendUnavailableError(f"smtp server {self._host}:{self._port} is unavailable: {exc}") from None
        except aiosmtplib.SMTPException as exc:
            raise ComponentError(f"smtp server {self._host}:{self._port} refused the e-mail: {exc}") from None
        except OSError as exc:
            raise BackendUnavailableError(f"smtp server {self._host}:{self._port} is unavailable: {exc}") from None
        return message_id.strip("<>")

    async def send_template(self, envelope: Envelope, subject: str, template_id: str, params: dict[str, str]) -> str:
        template = self._templates.get(template_id)
        if template is None:
            raise InvalidArgumentError(
                f"template {template_id!r} is not configured in email component {self.context.name}"
            )
        try:
            text = Template(template["text"]).substitute(params)
            rendered_subject = subject or Template(template["subject"]).substitute(params)
        except KeyError as exc:
            raise InvalidArgumentError(f"template {template_id!r} needs parameter {exc.args[0]!r}") from None
        except ValueError as exc:
            raise InvalidArgumentError(f"template {template_id!r} is malformed: {exc}") from None
        return await self.send(envelope, rendered_subject, text)
