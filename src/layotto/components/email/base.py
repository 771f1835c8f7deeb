"""The e-mail component interface."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field

from layotto.components.base import Component


@dataclass
class Envelope:
    sender: str
    to: list[str]
    cc: list[str] = field(default_factory=list)


class EmailSender(Component):
    @abstractmethod
    async def send(self, envelope: Envelope, subject: str, text: str) -> str:
        """Send a plain-text message; returns the request id (the Message-ID)."""

    @abstractmethod
    async def send_template(self, envelope: Envelope, subject: str, template_id: str, params: dict[str, str]) -> str:
        """Send the configured template `template_id` filled with `params`; returns the request id."""
