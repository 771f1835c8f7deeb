"""What every component is: created by a factory, initialised with metadata, closed once."""

from __future__ import annotations

import enum
import json
from abc import ABC
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from layotto.config import durations
from layotto.errors import ConfigError, UnsupportedError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class Metadata(Mapping[str, Any]):
    """Component metadata from config, with typed accessors that fail with a clear message.

    Keys are matched case-insensitively, as Go's config loaders do for upstream files.
    Values are usually strings (upstream metadata is map[string]string) but raw JSON values
    are kept for the components whose metadata is free-form (e.g. `file`).
    """

    def __init__(self, values: Mapping[str, Any] | None = None, *, where: str = "") -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._folded = {k.lower(): k for k in self._values}
        self.where = where

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            return self._values[key]
        return self._values[self._folded[key.lower()]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._values or key.lower() in self._folded)

    def _fail(self, key: str, problem: str) -> ConfigError:
        path = f"{self.where}.metadata.{key}" if self.where else f"metadata.{key}"
        return ConfigError(problem, path)

    def get_str(self, key: str, default: str = "") -> str:
        if key not in self:
            return default
        value = self[key]
        return value if isinstance(value, str) else json.dumps(value)

    def required(self, key: str) -> str:
        value = self.get_str(key)
        if not value:
            raise self._fail(key, f"required metadata '{key}' is missing")
        return value

    def get_int(self, key: str, default: int = 0) -> int:
        if key not in self or self[key] in ("", None):
            return default
        try:
            return int(self[key])
        except (TypeError, ValueError):
            raise self._fail(key, f"'{key}' must be an integer, got {self[key]!r}") from None

    def get_float(self, key: str, default: float = 0.0) -> float:
        if key not in self or self[key] in ("", None):
            return default
        try:
            return float(self[key])
        except (TypeError, ValueError):
            raise self._fail(key, f"'{key}' must be a number, got {self[key]!r}") from None

    def get_bool(self, key: str, default: bool = False) -> bool:
        if key not in self:
            return default
        value = self[key]
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self._fail(key, f"'{key}' must be true or false, got {value!r}")

    def get_duration(self, key: str, default: float) -> float:
        """Seconds from a Go duration ("500ms", "5s", "1m") or a bare number of seconds."""
        if key not in self or self[key] in ("", None):
            return default
        try:
            return parse_duration(str(self[key]))
        except ValueError:
            raise self._fail(key, f"'{key}' is not a duration: {self[key]!r}") from None

    def get_list(self, key: str, sep: str = ",") -> list[str]:
        raw = self.get_str(key)
        return [part.strip() for part in raw.split(sep) if part.strip()]

    def with_values(self, extra: Mapping[str, Any]) -> Metadata:
        merged = dict(self._values)
        merged.update(extra)
        return Metadata(merged, where=self.where)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def parse_duration(text: str) -> float:
    """Parse a Go-style duration ("1h2m3.5s", "250ms") or a plain number of seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return durations.go_duration(text)


@dataclass
class ComponentContext:
    """What the runtime tells a component about where it runs."""

    name: str
    block: str
    app_id: str = ""
    # Extra per-block settings from config that are not metadata (e.g. sequencer biggerThan).
    extras: dict[str, Any] = field(default_factory=dict)


class Feature(enum.StrEnum):
    """Base of the per-block feature enums (`StateFeature`, `PubSubFeature`, ...).

    A feature is an optional power of a block: the block's base class has a method for it whose
    default raises `UnsupportedError`, and a component that has the power overrides the method
    and names the feature in `features`. Callers decide by `feature in component.features`, never
    by `hasattr` or by trying. The values are the features' names in config, logs and metadata.
    """


class Component(ABC):
    """Base of all components.

    Lifecycle: the runtime constructs the component with no arguments, calls `init` once,
    `ping` for health probes, and `close` once at shutdown. A component must not block the
    event loop and must reconnect to its backend by itself after an outage.
    """

    #: The optional powers this component has: members of its block's `Feature` enum. Each block
    #: base narrows the type to its own enum (`StateStore.features: frozenset[StateFeature]`);
    #: here, where any block's component may be asked, the members are only known to be hashable
    #: `Feature`s, which is why this is `Any` rather than `Feature` (code that maps one block's
    #: features, as the Dapr metadata API does, indexes its own table with them).
    features: frozenset[Any] = frozenset()

    #: The keys of its metadata this component reads (its client's included), which `layotto
    #: components` lists; None where they are not declared. Keys the runtime reads for every
    #: component of a block (state `keyPrefix`, pub/sub delivery settings, binding `direction`)
    #: are not repeated here.
    metadata_keys: tuple[str, ...] | None = None

    context: ComponentContext

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        self.context = context

    # ping and close are optional hooks: doing nothing is the right default for a component
    # with no backend connection, so they are not abstract.
    async def ping(self) -> None:  # noqa: B027
        """Raise when the backend is unreachable; return when healthy."""

    async def close(self) -> None:  # noqa: B027
        """Release connections. Called once; must not raise."""


def unsupported(component: Component, feature: Feature, operation: str) -> UnsupportedError:
    """What an optional operation raises on a component that does not declare its feature."""
    return UnsupportedError(
        f"{type(component).__name__} does not support {operation} (no {type(feature).__name__}.{feature.name})",
        feature,
    )
