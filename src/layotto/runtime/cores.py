"""Block cores built from the started runtime's components, for the API adapters and the
runtime's own machinery (the replies of input bindings' apps save state and write to output
bindings through the same cores as the APIs).

Each core gets its components (and their key layout) here, once the runtime has built them;
the adapters get the core. Here, in the runtime, so that the runtime may build cores too
without importing the APIs. In a sidecar that reloads components (runtime/reload.py), a core's
table follows the runtime's components as reloads swap them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from layotto.components.base import Component, Metadata
from layotto.components.bindings.base import OutputBinding
from layotto.components.configuration.base import ConfigurationStore
from layotto.components.cryption.base import Cryption
from layotto.components.delay_queue.base import DelayScheduler
from layotto.components.email.base import EmailSender
from layotto.components.file.base import FileStore
from layotto.components.lock.base import LockStore
from layotto.components.oss.base import ObjectStore
from layotto.components.pubsub.base import PubSub
from layotto.components.secretstores.base import SecretStore
from layotto.components.sequencer.base import Sequencer
from layotto.components.state.base import StateStore
from layotto.config.model import ComponentSpec
from layotto.core.bindings import BindingsCore
from layotto.core.configuration import ConfigurationCore
from layotto.core.cryption import CryptionCore
from layotto.core.delay_queue import DelayQueueCore
from layotto.core.email import EmailCore
from layotto.core.file import FileCore
from layotto.core.lock import STRATEGY_KEY, BoundLock, LockCore, bind_locks
from layotto.core.oss import OssCore
from layotto.core.problems import Checks
from layotto.core.pubsub import PublishStyle, PubSubCore
from layotto.core.secrets import SecretsCore
from layotto.core.sequencer import BoundSequencer, SequencerCore, bind_sequencers
from layotto.core.state import BoundStore, StateCore, bind_stores
from layotto.runtime.runtime import Runtime

C = TypeVar("C", bound=Component)
V = TypeVar("V")

#: The binding metadata naming its directions.
DIRECTION = "direction"


def typed(rt: Runtime, block: str, kind: type[C]) -> dict[str, C]:
    """The block's components that implement `kind` (a block interface), by name; each one
    with an outbound resiliency policy under it. Every core gets its components here, so this
    is the one place where the policies meet every call a core makes to a component (and where
    a sidecar that reloads components counts the calls in progress on each)."""
    found = {name: c for name, c in rt.components(block).items() if isinstance(c, kind)}
    engine = rt.resiliency
    out: dict[str, C] = {}
    for name, component in found.items():
        seen_as = engine.guard(block, name, component) if engine else component
        out[name] = rt.calls.track(component, seen_as) if rt.swappable else seen_as
    return out


class _Live(Mapping[str, V]):
    """A core's components as the runtime has them now: rebuilt by `build` once a reload has
    replaced, added or removed a component (`Runtime.generation`), before the next lookup, so
    the next call goes to the new one while calls in progress finish on the old one."""

    __slots__ = ("_build", "_rt", "_seen", "_table")

    def __init__(self, rt: Runtime, build: Callable[[], Mapping[str, V]]) -> None:
        self._rt = rt
        self._build = build
        self._seen = rt.generation
        self._table = build()

    def _now(self) -> Mapping[str, V]:
        if self._seen != self._rt.generation:
            self._table = self._build()
            self._seen = self._rt.generation
        return self._table

    def __getitem__(self, name: str) -> V:
        return self._now()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._now().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._now()

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


def _table(rt: Runtime, build: Callable[[], Mapping[str, V]]) -> Mapping[str, V]:
    """What `build` makes, followed as reloads change it in a sidecar that reloads components;
    in the others, the table itself (their components never change)."""
    return _Live(rt, build) if rt.swappable else build()


def check_binding(rt: Runtime, spec: ComponentSpec, component: Component) -> None:
    """Raise the ConfigError a core would raise binding `component` as `spec` (a `keyPrefix`
    strategy it refuses), so that a reload refuses the new definition before any core sees it."""
    if spec.block == "state" and isinstance(component, StateStore):
        strategy = str(spec.metadata.get("keyPrefix", ""))
        bind_stores({spec.name: component}, {spec.name: strategy}, rt.app_id)
    elif spec.block == "lock" and isinstance(component, LockStore):
        strategies = {spec.name: spec.metadata[STRATEGY_KEY]} if STRATEGY_KEY in spec.metadata else {}
        bind_locks({spec.name: component}, strategies)
    elif spec.block == "sequencer" and isinstance(component, Sequencer):
        bind_sequencers({spec.name: component}, {spec.name: Metadata(spec.metadata)})


def metadata_values(rt: Runtime, block: str, names: Mapping[str, object], key: str) -> dict[str, object]:
    """Each named component's metadata value `key`, where it has one."""
    out: dict[str, object] = {}
    for name in names:
        spec = rt.spec(block, name)
        if spec is not None and key in spec.metadata:
            out[name] = spec.metadata[key]
    return out


def state_core(rt: Runtime, checks: Checks) -> StateCore:
    def build() -> Mapping[str, BoundStore]:
        stores = typed(rt, "state", StateStore)
        strategies = {n: str(v) for n, v in metadata_values(rt, "state", stores, "keyPrefix").items()}
        return bind_stores(stores, strategies, rt.app_id)

    return StateCore(_table(rt, build), checks)


def lock_core(rt: Runtime, checks: Checks) -> LockCore:
    def build() -> Mapping[str, BoundLock]:
        stores = typed(rt, "lock", LockStore)
        return bind_locks(stores, metadata_values(rt, "lock", stores, STRATEGY_KEY))

    return LockCore(_table(rt, build), rt.app_id, checks)


def secrets_core(rt: Runtime) -> SecretsCore:
    return SecretsCore(_table(rt, lambda: typed(rt, "secretstores", SecretStore)))


def directions(metadata: Mapping[str, object]) -> frozenset[str] | None:
    """A binding's `direction` metadata ("input", "output", "input, output"); None without it."""
    said = next((str(v) for k, v in metadata.items() if k.lower() == DIRECTION), None)
    if said is None:
        return None
    return frozenset(part.strip().lower() for part in said.split(",") if part.strip())


def allows(metadata: Mapping[str, object], direction: str) -> bool:
    """Whether a binding may serve as `direction`: no `direction` metadata allows both."""
    said = directions(metadata)
    return said is None or direction in said


def output_bindings(rt: Runtime) -> dict[str, OutputBinding]:
    """The bindings that are outputs, by name: those implementing OutputBinding whose
    `direction`, if any, names `output`. As in daprd, one whose direction says only `input` is
    no output binding, so every API (and a reply's `to`) answers for it as for an unknown one."""
    found: dict[str, OutputBinding] = {}
    for name, binding in typed(rt, "bindings", OutputBinding).items():
        spec = rt.spec("bindings", name)
        if allows(spec.metadata if spec is not None else {}, "output"):
            found[name] = binding
    return found


def bindings_core(rt: Runtime, checks: Checks) -> BindingsCore:
    return BindingsCore(_table(rt, lambda: output_bindings(rt)), checks)


def pubsub_core(rt: Runtime, checks: Checks, style: PublishStyle) -> PubSubCore:
    return PubSubCore(_table(rt, lambda: typed(rt, "pubsub", PubSub)), checks, style)


def configuration_core(rt: Runtime) -> ConfigurationCore:
    return ConfigurationCore(_table(rt, lambda: typed(rt, "configuration", ConfigurationStore)), rt.app_id)


def sequencer_core(rt: Runtime) -> SequencerCore:
    def build() -> Mapping[str, BoundSequencer]:
        stores = typed(rt, "sequencer", Sequencer)
        metadata = {}
        for name in stores:
            spec = rt.spec("sequencer", name)
            metadata[name] = Metadata(spec.metadata if spec else {})
        return bind_sequencers(stores, metadata)

    return SequencerCore(_table(rt, build), rt.app_id)


def file_core(rt: Runtime) -> FileCore:
    return FileCore(_table(rt, lambda: typed(rt, "file", FileStore)))


def oss_core(rt: Runtime) -> OssCore:
    return OssCore(_table(rt, lambda: typed(rt, "oss", ObjectStore)))


def cryption_core(rt: Runtime) -> CryptionCore:
    return CryptionCore(_table(rt, lambda: typed(rt, "cryption", Cryption)))


def email_core(rt: Runtime) -> EmailCore:
    return EmailCore(_table(rt, lambda: typed(rt, "email", EmailSender)))


def delay_queue_core(rt: Runtime, schedulers: Mapping[str, DelayScheduler]) -> DelayQueueCore:
    # The envelope is built as PublishEvent builds it; the delay queue makes its own checks.
    events = PubSubCore(_table(rt, lambda: typed(rt, "pubsub", PubSub)), Checks(()), PublishStyle())
    return DelayQueueCore(schedulers, events)
