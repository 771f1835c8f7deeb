"""The order components start in, and the stores they reference.

A component may name other components it needs at init: the secret stores of its `secret_ref`
entries (Dapr's `secretKeyRef`) and the config store and secret store of its `component_ref`.
Upstream starts the blocks in a fixed order (secret stores, then config stores, then the rest)
and so takes only references to a block started earlier; here each component starts after the
stores it references, in upstream's block order otherwise, so a secret store may take its
password from another secret store, or a config store from a secret store. A reference to a
component that is not configured, or a cycle of them, is a ConfigError naming the entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from layotto.config.model import BLOCKS, ComponentSpec
from layotto.errors import ConfigError

__all__ = ["Reference", "dependents", "init_order", "references"]

#: The block of each kind of store a component may reference, and its name in messages.
_STORES = {"secretstores": "secret store", "configuration": "config store"}


@dataclass(frozen=True)
class Reference:
    """One store a component references: its block and name, and which setting names it."""

    block: str
    name: str
    #: "secret_ref", "component_ref.config_store" or "component_ref.secret_store".
    setting: str

    def unknown(self, spec: ComponentSpec) -> ConfigError:
        return ConfigError(f"{self.setting} names unknown {_STORES[self.block]} '{self.name}'", spec.source)


def references(spec: ComponentSpec) -> list[Reference]:
    """The stores `spec` references, in the order its settings name them."""
    found = [
        Reference("secretstores", str(ref.get("store_name", "")), "secret_ref")
        for ref in spec.extras.get("secret_ref") or []
    ]
    ref = spec.component_ref
    if ref is not None:
        if ref.config_store:
            found.append(Reference("configuration", ref.config_store, "component_ref.config_store"))
        if ref.secret_store:
            found.append(Reference("secretstores", ref.secret_store, "component_ref.secret_store"))
    return found


def init_order(specs: Sequence[ComponentSpec], started: Iterable[tuple[str, str]] = ()) -> list[ComponentSpec]:
    """`specs` in the order to start them: upstream's block order (stable within a block),
    each one after the stores it references. `started` are components already up (a reload's
    batch references those too). Raises the ConfigError of the first unknown reference or
    cycle, in that order."""
    rank = {b: i for i, b in enumerate(BLOCKS)}
    ordered_specs = sorted(specs, key=lambda s: rank.get(s.block, len(rank)))
    # The first of a duplicated name wins here; starting the second one reports the duplicate.
    by_key: dict[tuple[str, str], ComponentSpec] = {}
    for spec in ordered_specs:
        by_key.setdefault((spec.block, spec.name), spec)
    up = set(started)
    for spec in ordered_specs:
        for ref in references(spec):
            if (ref.block, ref.name) not in by_key and (ref.block, ref.name) not in up:
                raise ref.unknown(spec)
    out: list[ComponentSpec] = []
    placed: set[int] = set()
    path: list[ComponentSpec] = []

    def place(spec: ComponentSpec) -> None:
        if id(spec) in placed:
            return
        if any(s is spec for s in path):
            cycle = [*path[next(i for i, s in enumerate(path) if s is spec) :], spec]
            shown = " -> ".join(f"{s.block} '{s.name}'" for s in cycle)
            raise ConfigError(f"component references form a cycle: {shown}", spec.source)
        path.append(spec)
        for ref in references(spec):
            target = by_key.get((ref.block, ref.name))
            if target is not None:
                place(target)
        path.pop()
        placed.add(id(spec))
        out.append(spec)

    for spec in ordered_specs:
        place(spec)
    return out


def dependents(specs: Iterable[ComponentSpec], block: str, name: str) -> list[ComponentSpec]:
    """The components among `specs` that reference the store (block, name)."""
    return [s for s in specs if any((r.block, r.name) == (block, name) for r in references(s))]
