"""Hot reload of components: a changed, added or removed component file under
`--resources-path`, and with `--watch-config` a changed component entry of the Layotto JSON file,
re-creates the components it changes, and only those, while the sidecar serves.

For each change the new components are built first (created, handed their referenced stores,
initialised) and checked as a core would bind them; if any of them fails, nothing changes, the
running components keep serving and the log says why. Otherwise they take the old ones' places
in one step: the cores' next lookups find them (runtime/cores.py), the calls in progress on the
old ones finish (runtime/inflight.py, up to the shutdown grace period), then the old ones close.
A component that other components reference (`component_ref`, `secret_ref`) brings them along:
they are re-created over the new one; one that others reference is not removed.

The files are polled (runtime/filewatch.py, as WASM functions are); a file whose components do
not change (a comment, another app's scope) changes nothing. Only Component documents are
reloaded: Subscription, Configuration and Resiliency resources are read at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from layotto.components.base import Component
from layotto.config.model import ComponentSpec
from layotto.errors import ConfigError, LayottoError
from layotto.runtime.cores import check_binding
from layotto.runtime.filewatch import Stamp, Watcher, file_stamp
from layotto.runtime.refs import dependents, init_order
from layotto.runtime.runtime import Runtime

__all__ = ["Reloader", "SwapHook", "same_definition"]

log = logging.getLogger("layotto.reload")

Key = tuple[str, str]

#: Called once a reload has put `component` (None: removed) in the place of (block, name), before
#: the old one closes: for the sidecar's parts that hold components outside the cores.
SwapHook = Callable[[str, str, Component | None], Awaitable[None]]

#: Blocks whose components background services hold (subscriptions, input bindings): the
#: runtime's services start again over the new components.
_SERVICE_BLOCKS = frozenset({"pubsub", "bindings"})
#: Blocks read once at start by parts that cannot take a new component.
_FIXED_BLOCKS = {"nameresolution": "the invocation engine reads its name resolution once, at start"}
_YAML_SUFFIXES = (".yaml", ".yml")


def same_definition(a: ComponentSpec, b: ComponentSpec) -> bool:
    """Whether two specs define the same component (where each was declared aside)."""
    return (a.block, a.name, a.type, a.kind, a.metadata, a.extras, a.component_ref) == (
        b.block,
        b.name,
        b.type,
        b.kind,
        b.metadata,
        b.extras,
        b.component_ref,
    )


@dataclass
class _Source:
    """A file the components of which are watched, as last applied."""

    stamp: Stamp | None
    specs: list[ComponentSpec]


class Reloader:
    """Watches the component files of `rt.config` and reloads what changes in them."""

    def __init__(
        self,
        rt: Runtime,
        *,
        interval: float = 0.5,
        grace: float | None = None,
        hooks: Sequence[SwapHook] = (),
    ) -> None:
        self.rt = rt
        cfg = rt.config
        self._grace = cfg.shutdown_grace if grace is None else grace
        self._hooks = list(hooks)
        self._resources = Path(cfg.resources_path) if cfg.resources_path else None
        self._json = Path(cfg.source) if cfg.watch_config and _is_file(cfg.source) else None
        self._sources: dict[str, _Source] = {}
        self._lock = asyncio.Lock()
        self._watcher: Watcher[str] = Watcher(self._sample, self._changed, self._applied, interval, "component-reload")
        #: Reloads applied and refused so far (for tests and the log).
        self.applied = 0
        self.refused = 0
        self._changes = asyncio.Condition()

    @property
    def interval(self) -> float:
        """Seconds between two looks at the files (a change applies after two looks)."""
        return self._watcher.interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self._watcher.interval = seconds

    @property
    def enabled(self) -> bool:
        return self._resources is not None or self._json is not None

    async def start(self) -> None:
        """Take each watched file as it is now, then watch. A file that changed since the
        sidecar read it is reloaded at the first look."""
        for path in await asyncio.to_thread(self._files):
            try:
                stamp: Stamp | None = await asyncio.to_thread(file_stamp, path)
            except OSError:
                stamp = None
            self._sources[path] = _Source(None, self._started_from(path))
            if stamp is not None and self._matches_running(path):
                self._sources[path].stamp = stamp
        self._watcher.start()
        watched = [str(p) for p in (self._resources, self._json) if p is not None]
        log.info("watching %s for component changes", " and ".join(watched))

    async def stop(self) -> None:
        """After the reload in progress, if any: its old components close, its new ones stay."""
        async with self._lock:
            await self._watcher.stop()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate` holds after some reload was applied or refused (tests)."""
        async with self._changes:
            await self._changes.wait_for(predicate)

    # ---- the files ----

    def _files(self) -> list[str]:
        """The watched files that are there now."""
        found: list[str] = []
        if self._json is not None and self._json.is_file():
            found.append(str(self._json))
        root = self._resources
        if root is not None:
            if root.is_dir():
                found += sorted(str(p) for p in root.iterdir() if p.is_file() and p.suffix.lower() in _YAML_SUFFIXES)
            elif root.is_file():
                found.append(str(root))
        return found

    async def _sample(self) -> dict[str, Stamp | None]:
        def look() -> dict[str, Stamp | None]:
            stamps: dict[str, Stamp | None] = dict.fromkeys(self._sources)
            for path in self._files():
                try:
                    stamps[path] = file_stamp(path)
                except OSError:
                    stamps[path] = None
            return stamps

        return await asyncio.to_thread(look)

    def _applied(self, path: str) -> Stamp | None:
        source = self._sources.get(path)
        return source.stamp if source is not None else None

    def _read(self, path: str) -> list[ComponentSpec]:
        """The components `path` declares now (ConfigError when it cannot be read or checked)."""
        cfg = self.rt.config
        if self._json is not None and path == str(self._json):
            from layotto.config import layotto_json

            return layotto_json.load_file(path).components
        from layotto.config import dapr_yaml

        warnings: list[str] = []
        found = [r for r in dapr_yaml.load_file(Path(path), cfg.app.app_id, warnings) if isinstance(r, ComponentSpec)]
        for warning in warnings:
            log.warning("%s", warning)
        return found

    def _started_from(self, path: str) -> list[ComponentSpec]:
        """The running components `path` declared when the sidecar read it."""
        try:
            declared = {(s.block, s.name) for s in self._read(path)}
        except ConfigError:
            declared = set()
        return [s for s in self.rt.specs() if (s.block, s.name) in declared]

    def _matches_running(self, path: str) -> bool:
        try:
            now = self._read(path)
        except ConfigError:
            return False
        started = {(s.block, s.name): s for s in self._sources[path].specs}
        return len(now) == len(started) and all(
            (s.block, s.name) in started and same_definition(s, started[(s.block, s.name)]) for s in now
        )

    # ---- applying a change ----

    async def _changed(self, path: str, stamp: Stamp | None) -> bool:
        async with self._lock:
            try:
                specs = [] if stamp is None else await asyncio.to_thread(self._read, path)
                specs = await self._apply(path, specs)
            except (ConfigError, _RefusedError) as exc:
                self.refused += 1
                log.error("%s changed, and is not applied: %s; the running components are kept", path, exc)
                await self._notify()
                return False
            except Exception:  # a component's own bug: refused as a broken definition is
                self.refused += 1
                log.exception("%s changed, and applying it failed; the running components are kept", path)
                await self._notify()
                return False
            self._sources[path] = _Source(stamp, specs)
            self.applied += 1
            await self._notify()
            return True

    async def _notify(self) -> None:
        async with self._changes:
            self._changes.notify_all()

    async def _apply(self, path: str, specs: list[ComponentSpec]) -> list[ComponentSpec]:
        """Apply what `path` declares now; the specs it declares that this runtime runs."""
        rt = self.rt
        before = {(s.block, s.name): s for s in self._sources.get(path, _Source(None, [])).specs}
        after: dict[Key, ComponentSpec] = {}
        for spec in specs:
            key = (spec.block, spec.name)
            if key in after:
                raise ConfigError(f"duplicate {spec.block} component name '{spec.name}'", spec.source)
            after[key] = spec
        others = {k for src, s in self._sources.items() if src != path for k in ((x.block, x.name) for x in s.specs)}
        changed: dict[Key, ComponentSpec] = {}
        for key, spec in list(after.items()):
            unavailable = rt.unavailable(spec)
            if unavailable is not None:
                log.warning("%s", unavailable)
                del after[key]
                continue
            if key in others or (key not in before and rt.spec(*key) is not None):
                raise ConfigError(f"duplicate {spec.block} component name '{spec.name}'", spec.source)
            running = rt.spec(*key)
            if running is None or not same_definition(running, spec):
                changed[key] = spec
        removed = [key for key in before if key not in after and rt.spec(*key) is not None]
        if not changed and not removed:
            log.info("%s changed; its components did not", path)
            return list(after.values())
        for block, name in [*changed, *removed]:
            if block in _FIXED_BLOCKS:
                raise _RefusedError(f"{block} component '{name}' cannot be reloaded: {_FIXED_BLOCKS[block]}")
        await self._swap(changed, removed)
        done = [f"{b} '{n}' {'changed' if (b, n) in before else 'added'}" for b, n in changed]
        log.info("%s reloaded: %s", path, ", ".join([*done, *(f"{b} '{n}' removed" for b, n in removed)]))
        return list(after.values())

    async def _swap(self, changed: dict[Key, ComponentSpec], removed: list[Key]) -> None:
        """Build every new component (and the ones referencing a changed store), then put them
        all in place, then close the old ones once their calls are over."""
        rt = self.rt
        running = rt.specs()
        staying = [s for s in running if (s.block, s.name) not in changed and (s.block, s.name) not in removed]
        for block, name in removed:
            users = dependents(staying, block, name)
            if users:
                shown = ", ".join(f"{s.block} '{s.name}'" for s in users)
                raise _RefusedError(f"{block} '{name}' is referenced by {shown}, so it is not removed")
        # The components that reference a changed store start again over the new one.
        batch = dict(changed)
        pending = list(changed)
        while pending:
            block, name = pending.pop()
            for user in dependents(staying, block, name):
                key = (user.block, user.name)
                if key not in batch:
                    batch[key] = user
                    pending.append(key)
                    staying = [s for s in staying if (s.block, s.name) != key]
        order = init_order(list(batch.values()), started=[(s.block, s.name) for s in staying])
        built: dict[Key, Component] = {}

        def find(block: str, name: str) -> Component | None:
            if (block, name) in built:
                return built[(block, name)]
            if (block, name) in batch or (block, name) in removed:
                return None
            return rt.get(block, name)

        try:
            for spec in order:
                component = await rt.build(spec, find)
                built[(spec.block, spec.name)] = component
                check_binding(rt, spec, component)
        except BaseException:
            for component in built.values():
                await _close(component, "a refused reload's new component")
            raise
        old: list[Component] = []
        for spec in order:
            previous = rt.replace(spec, built[(spec.block, spec.name)])
            if previous is not None:
                old.append(previous)
        for block, name in removed:
            previous = rt.remove(block, name)
            if previous is not None:
                old.append(previous)
        touched = [(s.block, s.name) for s in order] + removed
        for block, name in touched:
            for hook in self._hooks:
                try:
                    await hook(block, name, rt.get(block, name))
                except Exception:
                    log.exception("a reload hook failed for %s '%s'", block, name)
        if any(block in _SERVICE_BLOCKS for block, _ in touched):
            try:
                await rt.restart_services()
            except Exception:  # the swap is done: the old components must still close
                log.exception("starting the background services again after a reload failed")
        if not await rt.calls.drained(list(old), self._grace):
            log.warning("calls on the replaced components were still in progress after %.1fs", self._grace)
        for component in old:
            await _close(component, "a replaced component")


class _RefusedError(LayottoError):
    """A change this runtime does not apply (as opposed to a broken definition)."""


def _is_file(path: str) -> bool:
    try:
        return bool(path) and Path(path).is_file()
    except (OSError, ValueError):
        return False


async def _close(component: Component, what: str) -> None:
    try:
        await component.close()
    except Exception:
        log.exception("closing %s failed", what)
