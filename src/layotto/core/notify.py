"""The SMS and phone-call extensions. No SMS or voice provider can be reached from here, so no
component type exists for either: every component name is unknown, as upstream answers when
none is configured."""

from __future__ import annotations

from enum import Enum
from typing import NoReturn

from layotto.core.problems import Problem

__all__ = ["NotifyCore", "NotifyProblem"]


class NotifyProblem(Enum):
    NOT_FOUND = "component not found"  # facts: kind, name


class NotifyCore:
    def send(self, kind: str, name: str) -> NoReturn:
        """`kind` is "sms" or "phone", as upstream names the component kind in its error."""
        raise Problem(NotifyProblem.NOT_FOUND, kind=kind, name=name)
