"""The Runtime: builds every configured component, in upstream's order, and closes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from layotto.components.base import Component, ComponentContext, Metadata
from layotto.config.model import BLOCKS, ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError, LayottoError
from layotto.runtime import registry

if TYPE_CHECKING:
    from layotto.runtime.appchannel import AppChannelFactory
    from layotto.runtime.resiliency import Resiliency

log = logging.getLogger("layotto.runtime")


class Service(Protocol):
    """A background task owned by the runtime (event delivery, watchers, ...)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


#: Hooks run after components are up, each returning services to start. Block packages
#: append to this at import time of their runtime module (see runtime/services.py).
ServiceFactory = Callable[["Runtime"], Awaitable[list[Service]]]


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        app_channels: Mapping[str, AppChannelFactory] | None = None,
        resiliency: Resiliency | None = None,
    ) -> None:
        self.config = config
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

    # ---- lifecycle ----
    async def start(self, service_factories: list[ServiceFactory] | None = None) -> None:
        order = {b: i for i, b in enumerate(BLOCKS)}
        specs = sorted(self.config.components, key=lambda s: order.get(s.block, len(order)))
        try:
            for spec in specs:
                if not registry.is_known_block(spec.block):
                    msg = (
                        f"{spec.source}: the '{spec.block}' building block is not available yet;"
                        f" component '{spec.name}' is ignored"
                    )
                    self.config.warnings.append(msg)
                    log.warning(msg)
                    continue
                await self._init_component(spec)
            for factory in service_factories or []:
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
        component = registry.create(spec.block, spec.type, spec.source)
        metadata = Metadata(await self._resolve_secret_refs(spec), where=spec.source)
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
        self.add(spec, component)
        self.component_health[(spec.block, spec.name)] = "UP"
        log.info("initialised %s component %r of type %r", spec.block, spec.name, spec.type)

    async def _resolve_secret_refs(self, spec: ComponentSpec) -> dict[str, object]:
        """Copy `secret_ref` entries ({store_name, key, sub_key, inject_as}) into metadata."""
        metadata: dict[str, object] = dict(spec.metadata)
        refs = spec.extras.get("secret_ref") or []
        if not refs:
            return metadata
        from layotto.components.secretstores.base import SecretStore, resolve_secret  # block may be absent

        for ref in refs:
            store_name = str(ref.get("store_name", ""))
            store = self.get("secretstores", store_name)
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
                return (block, name), "UP"
            except Exception as exc:  # any failure is a DOWN component, reported, not raised
                log.warning("health probe of %s %r failed: %s", block, name, exc)
                return (block, name), "DOWN"

        checks = [probe(b, n, c) for b, by_name in self._components.items() for n, c in by_name.items()]
        results = dict(await asyncio.gather(*checks))
        self.component_health.update(results)
        return results

    async def close(self) -> None:
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping a service failed")
        self.services.clear()
        for by_name in reversed(list(self._components.values())):
            for name, component in by_name.items():
                try:
                    await component.close()
                except Exception:
                    log.exception("closing component %r failed", name)
        self._components.clear()
        self._specs.clear()
