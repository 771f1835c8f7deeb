"""The Email extension: component lookup and calls to the sender."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from layotto.components.email.base import EmailSender, Envelope
from layotto.core.problems import guarded, named

__all__ = ["EmailCore", "EmailProblem"]


class EmailProblem(Enum):
    NOT_FOUND = "email component not found"  # facts: kind, name
    SEND_FAILED = "sending failed"  # facts: name


class EmailCore:
    KIND = "email"

    def __init__(self, senders: Mapping[str, EmailSender]) -> None:
        self._senders = senders

    def _sender(self, name: str) -> EmailSender:
        return named(self._senders, name, EmailProblem.NOT_FOUND, kind=self.KIND, name=name)

    async def send(self, name: str, envelope: Envelope, subject: str, text: str) -> str:
        """The message's request id."""
        return await guarded(self._sender(name).send(envelope, subject, text), EmailProblem.SEND_FAILED, name=name)

    async def send_template(
        self, name: str, envelope: Envelope, subject: str, template_id: str, params: dict[str, str]
    ) -> str:
        call = self._sender(name).send_template(envelope, subject, template_id, params)
        return await guarded(call, EmailProblem.SEND_FAILED, name=name)
