"""Typed problems: what a block core raises instead of a status code and a message.

A core names what went wrong (a `kind`, one enum per block) and the facts a message needs; each
API keeps a table from kind to its own status code and message template, so upstream's exact
wording is data in the adapter and the logic exists once.

APIs do not all check the same things, nor in the same order (the Dapr API lets an empty state
key through, the Layotto API refuses it; Layotto checks a binding's operation before looking the
binding up, daprd the other way round). So a core is built with the `Checks` of the API it
serves: the kinds that API reports, in the order it checks them. When a request has several
problems, the core raises the one that API would have found first, and a kind the API does not
list is no problem for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from enum import Enum
from typing import TypeVar

from layotto.errors import ComponentError

__all__ = ["Checks", "Problem", "guarded", "named"]

C = TypeVar("C")
T = TypeVar("T")


class Problem(Exception):  # noqa: N818  (a refusal is not an error of ours; "problem" is what it is)
    """A refused or failed request. `cause` is the component's error when one failed."""

    # Positional-only, so that a fact may be called `kind` or `cause`.
    def __init__(self, kind: Enum, cause: BaseException | None = None, /, **facts: object) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.cause = cause
        self.facts = facts

    def __str__(self) -> str:
        details = ", ".join(f"{k}={v!r}" for k, v in self.facts.items())
        suffix = f": {self.cause}" if self.cause is not None else ""
        return f"{self.kind.value}({details}){suffix}"


class Checks:
    """The problem kinds one API reports, in the order it checks them."""

    __slots__ = ("_rank",)

    def __init__(self, kinds: Iterable[Enum]) -> None:
        self._rank = {kind: i for i, kind in enumerate(kinds)}

    def refuse(self, found: Sequence[Problem]) -> None:
        """Raise the problem of `found` this API checks first; return if it checks none."""
        ranked = [p for p in found if p.kind in self._rank]
        if ranked:
            raise min(ranked, key=lambda p: self._rank[p.kind])


def named(
    components: Mapping[str, C], name: str, missing: Enum, /, none_configured: Enum | None = None, **facts: object
) -> C:
    """The component `name`; else the problem `none_configured` when there are no components
    and it is given, `missing` otherwise, with `facts`."""
    found = components.get(name)
    if found is None:
        raise Problem(none_configured if none_configured is not None and not components else missing, **facts)
    return found


async def guarded(call: Awaitable[T], failed: Enum, **facts: object) -> T:
    """Await a component's `call`; the ComponentError it raises becomes the problem `failed`,
    with the error as its cause."""
    try:
        return await call
    except ComponentError as exc:
        raise Problem(failed, exc, **facts) from exc
