"""The one shape of a backend under test: every contract suite is a table of `BackendRow`s.

A row names a component (block + type + metadata), the shared services it needs, the optional
features the component must declare, and the facts about it that only its block's suites need
(`traits`, a small frozen dataclass per block, or None). Adding a backend to a block is one row.

`require()` goes through tests/support/services.py: a missing service skips locally and fails
under CI=true.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pytest

from layotto.components.base import Component, ComponentContext, Feature, Metadata
from layotto.runtime.registry import ComponentRegistry
from tests.support.services import require

T = TypeVar("T")

#: Component metadata as a row gives it: a dict, or a function building it (for values known only
#: when the test runs: a scratch folder, a test server's URL, processes started on demand).
MetadataSource = Mapping[str, Any] | Callable[..., Mapping[str, Any]]


@dataclass(frozen=True, kw_only=True)
class BackendRow(Generic[T]):
    #: The block, as in `layotto.components.<block>` ("state", "lock", "secretstores", ...).
    block: str
    #: The component type in config (a key of the block's FACTORIES).
    type: str
    #: Suite-specific facts about this backend (see each block's backends.py), or None.
    traits: T
    metadata: MetadataSource = field(default_factory=dict)
    #: Shared services from tests/support/services.SERVICES the backend needs.
    requires: tuple[str, ...] = ()
    #: The optional features the component declares; a contract test checks that the component
    #: says exactly this and that the features' operations do (and the others refuse).
    features: frozenset[Feature] = frozenset()
    #: The test id; the type when empty (two rows of one type need names).
    name: str = ""
    #: Removes what the backend kept for this run (tables, streams, ...). Its arguments, if any,
    #: are the block's (pub/sub passes the topics and consumer groups it used).
    cleanup: Callable[..., Awaitable[None]] | None = field(default=None, repr=False)
    #: The registry that knows `type` (None: the built-in types): a pluggable component's row
    #: starts its component process and discovers it.
    registry: Callable[[], Awaitable[ComponentRegistry]] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.name or self.type

    def require(self) -> None:
        for service in self.requires:
            require(service)

    def meta(self, *args: Any) -> dict[str, Any]:
        """The component metadata (`args` go to a metadata function: a block's suite says which)."""
        source = self.metadata
        return dict(source(*args) if callable(source) else source)

    def entry(self, *args: Any, **extra: Any) -> dict[str, Any]:
        """The component's entry in a Layotto JSON config, with `extra` metadata."""
        return {"type": self.type, "metadata": {**self.meta(*args), **extra}}

    def param(self) -> Any:
        return pytest.param(self, id=self.id)

    async def components(self) -> ComponentRegistry:
        """The registry to make this row's component with (and a sidecar serving it)."""
        return await self.registry() if self.registry is not None else ComponentRegistry()

    async def create(
        self,
        *args: Any,
        name: str = "under-test",
        app_id: str = "contract-app",
        extras: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> Component:
        """The component, made and initialised as the runtime does it, for tests that drive it
        through its block interface. The caller closes it."""
        self.require()
        component = (await self.components()).create(self.block, self.type, f"row {self.id}")
        metadata = Metadata({**self.meta(*args), **extra}, where=f"{self.block}.{name}")
        await component.init(metadata, ComponentContext(name, self.block, app_id, dict(extras or {})))
        return component


def params(rows: Iterable[BackendRow[Any]]) -> list[Any]:
    """pytest parameters of `rows`, with their ids."""
    return [row.param() for row in rows]


def by_id(rows: Iterable[BackendRow[T]]) -> dict[str, BackendRow[T]]:
    return {row.id: row for row in rows}


def with_feature(rows: Iterable[BackendRow[T]], feature: Feature) -> list[BackendRow[T]]:
    return [row for row in rows if feature in row.features]
