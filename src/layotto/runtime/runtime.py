"""The Runtime: builds every configured component, in upstream's order, and closes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

from layotto.components.base import Component, ComponentContext, Metadata
from layotto.components.dynamic import SetComponent
from layotto.config.model import ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError, LayottoError
from layotto.runtime.inflight import InFlight
from layotto.runtime.refs import init_order
from layotto.runtime.registry import ComponentRegistry

if TYPE_CHECKING:
    from layotto.runtime.appchannel import AppChannelFactory
    from layotto.runtime.resiliency import Resiliency

log = logging.getLogger("layotto.runtime")

T = TypeVar("T")


class Service(Protocol):
    """A background task owned by the runtime (event delivery, watchers, ...)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


#: Hooks run after components are up, each returning services to start. Block packages
#: append to this at import time of their runtime module (see runtime/services.py).
ServiceFactory = Callable[["Runtime"], Awaitable[list[Service]]]

#: Finds a started component by (block, name): the runtime's, or a reload's new ones first.
Lookup = Callable[[str, str], Component | None]


def factory_type(spec: ComponentSpec) -> str:
    """The registry's name of the component's type: a custom component's is `<kind>.<type>`
    (components/custom), since each kind has its own types."""
    return f"{spec.kind}.{spec.type}" if spec.block == "custom" else spec.type


def _setting(spec: ComponentSpec, setter: Callable[[T], None], store: T) -> None:
    """Hand `store` to the component; its refusal is a ConfigError naming the entry."""
    try:
        setter(store)
    except ConfigError as exc:
        if exc.path:
            raise
        raise ConfigError(str(exc), spec.source) from None


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        app_channels: Mapping[str, AppChannelFactory] | None = None,
        resiliency: Resiliency | None = None,
        registry: ComponentRegistry | None = None,
    ) -> None:
        self.config = config
        #: The component types this runtime makes components of (None: the built-in ones).
        self.registry = registry if registry is not None else ComponentRegistry()
        #: app.callback_api -> the channel to an app speaking that callback API.
        self.app_channels: Mapping[str, AppChannelFactory] = dict(app_channels or {})
        #: The resiliency policies every user of the components and of the app applies (None: none).
        self.resiliency = resiliency
        self.app_id = config.app.app_id
        self._components: dict[str, dict[str, Component]] = {}
        self._specs: dict[tuple[str, str], ComponentSpec] = {}
        self.services: list[Service] = []
        #: "INIT" until start() completes, then "UP"; "DOWN" once shutdown begins.
        self.status = "INIT"
        #: (block, name) -> "UP" | "DOWN": a state store and a lock may share a name.
        self.component_health: dict[tuple[str, str], str] = {}
        #: (block, name) -> why its last health probe failed, for the components DOWN.
        self.component_errors: dict[tuple[str, str], str] = {}
        #: Whether components may be replaced while the sidecar runs (hot reload is on): the
        #: cores then follow the components (`generation`) and count the calls on each (`calls`).
        self.swappable = False
        #: Bumped each time a component is replaced, added or removed while running.
        self.generation = 0
        self.calls = InFlight()
        self._service_factories: list[ServiceFactory] = []

    # ---- lookup, used by the API layer ----
    def components(self, block: str) -> dict[str, Component]:
        return self._components.get(block, {})

    def get(self, block: str, name: str) -> Component | None:
        return self._components.get(block, {}).get(name)

    def spec(self, block: str, name: str) -> ComponentSpec | None:
        return self._specs.get((block, name))

    def add(self, spec: ComponentSpec, component: Component) -> None:
        self._components.setdefault(spec.block, {})[spec.name] = component
        self._specs[(spec.block, spec.name)] = spec

    def custom(self, kind: str) -> dict[str, Component]:
        """The custom components of `kind`, by name (upstream's `CustomComponent[kind]`): how an
        API or a component that knows the kind finds them."""
        return {
            name: c
            for name, c in self.components("custom").items()
            if (spec := self.spec("custom", name)) is not None and spec.kind == kind
        }

    def specs(self) -> list[ComponentSpec]:
        """The specs of the started components."""
        return list(self._specs.values())

    # ---- changes while running (runtime/reload.py) ----
    def replace(self, spec: ComponentSpec, component: Component) -> Component | None:
        """Put `component` (started) in the place of `spec`'s (block, name); the one it replaces,
        or None for a new one. The cores' next lookups find it; the caller closes the old one
        once the calls in progress on it are over."""
        old = self.get(spec.block, spec.name)
        self.add(spec, component)
        self.component_health[(spec.block, spec.name)] = "UP"
        self.generation += 1
        return old

    def remove(self, block: str, name: str) -> Component | None:
        """Take the component (block, name) out; the caller closes it (see `replace`)."""
        old = self._components.get(block, {}).pop(name, None)
        self._specs.pop((block, name), None)
        self.component_health.pop((block, name), None)
        self.generation += 1
        return old

    async def restart_services(self) -> None:
        """Stop the background services and start them again from their factories (after a
        reload changed the pub/sub or binding components they hold)."""
        await self._stop_services()
        for factory in self._service_factories:
            for service in await factory(self):
                await service.start()
                self.services.append(service)

    def unavailable(self, spec: ComponentSpec) -> str | None:
        """Why `spec` is not started (a warning), or None: a block not built here, or a custom
        kind no type is registered for (upstream logs and skips those too)."""
        if not self.registry.is_known_block(spec.block):
            return (
                f"{spec.source}: the '{spec.block}' building block is not available yet;"
                f" component '{spec.name}' is ignored"
            )
        if spec.block == "custom" and not any(t.startswith(f"{spec.kind}.") for t in self.registry.types_of("custom")):
            return (
                f"{spec.source}: custom component kind '{spec.kind}' is not supported;"
                f" component '{spec.name}' is ignored"
            )
        return None

    # ---- lifecycle ----
    async def start(self, service_factories: list[ServiceFactory] | None = None) -> None:
        self._service_factories = list(service_factories or [])
        specs = []
        for spec in self.config.components:
            msg = self.unavailable(spec)
            if msg is not None:
                self.config.warnings.append(msg)
                log.warning(msg)
                continue
            specs.append(spec)
        try:
            for spec in init_order(specs):
                await self._init_component(spec)
            for factory in self._service_factories:
                for service in await factory(self):
                    await service.start()
                    self.services.append(service)
        except BaseException:
            await self.close()
            raise
        self.status = "UP"

    async def _init_component(self, spec: ComponentSpec) -> None:
        if (spec.block, spec.name) in self._specs:
            raise ConfigError(f"duplicate {spec.block} component name '{spec.name}'", spec.source)
        component = await self.build(spec)
        self.add(spec, component)
        self.component_health[(spec.block, spec.name)] = "UP"
        log.info("initialised %s component %r of type %r", spec.block, spec.name, spec.type)

    def create(self, spec: ComponentSpec) -> Component:
        """A new component of `spec`'s type, not initialised (ConfigError for an unknown type)."""
        if spec.block == "custom":
            known = [t.partition(".")[2] for t in self.registry.types_of("custom") if t.startswith(f"{spec.kind}.")]
            if spec.type not in known:
                raise ConfigError(
                    f"custom component type '{spec.type}' of kind '{spec.kind}' is not registered"
                    f" (known: {', '.join(known) or 'none'})",
                    spec.source,
                )
        return self.registry.create(spec.block, factory_type(spec), spec.source)

    async def build(self, spec: ComponentSpec, lookup: Lookup | None = None) -> Component:
        """A started component for `spec`, not yet in the runtime: created, handed the stores
        its `component_ref` names, given its metadata with `secret_ref`s resolved, initialised.
        `lookup` finds the stores it references (default: the runtime's components). A
        component whose init fails is closed; the error is a ConfigError naming the entry."""
        find = lookup or self.get
        component = self.create(spec)
        try:
            self._hand_refs(spec, component, find)
            metadata = Metadata(await self._resolve_secret_refs(spec, find), where=spec.source)
            await self._init(spec, component, metadata)
        except BaseException:
            try:
                await component.close()
            except Exception:  # a component that failed half way may not have what close() needs
                log.debug("closing %s component %r after its failed start failed", spec.block, spec.name, exc_info=True)
            raise
        return component

    @staticmethod
    def _hand_refs(spec: ComponentSpec, component: Component, find: Lookup) -> None:
        """Upstream's SetComponent: the referenced stores, before init (init may read them)."""
        ref = spec.component_ref
        if ref is None:
            return
        from layotto.components.configuration.base import ConfigurationStore
        from layotto.components.secretstores.base import SecretStore

        if not isinstance(component, SetComponent):
            # As upstream, which hands the stores only to a component that takes them.
            log.warning(
                "%s: component_ref is ignored: %s component '%s' (%s) takes no referenced stores",
                spec.source,
                spec.block,
                spec.name,
                spec.type,
            )
            return
        if ref.config_store:
            config_store = find("configuration", ref.config_store)
            if not isinstance(config_store, ConfigurationStore):
                raise ConfigError(f"component_ref names unknown config store '{ref.config_store}'", spec.source)
            _setting(spec, component.set_config_store, config_store)
        if ref.secret_store:
            secret_store = find("secretstores", ref.secret_store)
            if not isinstance(secret_store, SecretStore):
                raise ConfigError(f"component_ref names unknown secret store '{ref.secret_store}'", spec.source)
            _setting(spec, component.set_secret_store, secret_store)

    async def _init(self, spec: ComponentSpec, component: Component, metadata: Metadata) -> None:
        context = ComponentContext(name=spec.name, block=spec.block, app_id=self.app_id, extras=dict(spec.extras))
        try:
            await component.init(metadata, context)
        except ConfigError:
            raise
        except LayottoError as exc:
            raise ConfigError(
                f"{spec.block} component '{spec.name}' ({spec.type}) failed to start: {exc}", spec.source
            ) from exc
        except (TimeoutError, OSError) as exc:
            raise ConfigError(
                f"{spec.block} component '{spec.name}' ({spec.type}) cannot reach its backend: {exc}", spec.source
            ) from exc

    async def _resolve_secret_refs(self, spec: ComponentSpec, find: Lookup) -> dict[str, object]:
        """Copy `secret_ref` entries ({store_name, key, sub_key, inject_as}) into metadata."""
        metadata: dict[str, object] = dict(spec.metadata)
        refs = spec.extras.get("secret_ref") or []
        if not refs:
            return metadata
        from layotto.components.secretstores.base import SecretStore, resolve_secret  # block may be absent

        for ref in refs:
            store_name = str(ref.get("store_name", ""))
            store = find("secretstores", store_name)
            if not isinstance(store, SecretStore):
                raise ConfigError(f"secret_ref names unknown secret store '{store_name}'", spec.source)
            key = str(ref.get("key", ""))
            sub_key = str(ref.get("sub_key", "") or key)
            try:
                value = await resolve_secret(store, key, sub_key)
            except LayottoError as exc:
                raise ConfigError(f"secret_ref to store '{store_name}': {exc}", spec.source) from exc
            metadata[str(ref.get("inject_as", "") or sub_key)] = value
        return metadata

    async def health(self) -> dict[tuple[str, str], str]:
        """Ping every component; returns (block, name) -> "UP" | "DOWN"."""

        async def probe(block: str, name: str, component: Component) -> tuple[tuple[str, str], str]:
            try:
                await asyncio.wait_for(component.ping(), timeout=2.0)
                self.component_errors.pop((block, name), None)
                return (block, name), "UP"
            except Exception as exc:  # any failure is a DOWN component, reported, not raised
                log.warning("health probe of %s %r failed: %s", block, name, exc)
                why = "no answer within 2 s" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
                self.component_errors[(block, name)] = why
                return (block, name), "DOWN"

        checks = [probe(b, n, c) for b, by_name in self._components.items() for n, c in by_name.items()]
        results = dict(await asyncio.gather(*checks))
        self.component_health.update(results)
        return results

    async def _stop_services(self) -> None:
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping a service failed")
        self.services.clear()

    async def close(self) -> None:
        await self._stop_services()
        for by_name in reversed(list(self._components.values())):
            for name, component in by_name.items():
                try:
                    await component.close()
                except Exception:
                    log.exception("closing component %r failed", name)
        self._components.clear()
        self._specs.clear()
