"""The tracer and its configuration (upstream's top-level `tracing` block).

    "tracing": {"enable": true, "driver": "SOFATracer",
                "config": {"generator": "mosntracing", "exporter": ["stdout"]}}

Built only when `enable` is true: an untraced sidecar has no tracer and pays nothing. The
tracer hands finished spans to its exporters; the gRPC interceptor (`interceptor.py`) makes a
SERVER span per call, event delivery a CONSUMER span per callback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError
from layotto.observability.tracing.exporters import EXPORTERS, Exporter
from layotto.observability.tracing.span import Span

log = logging.getLogger("layotto.tracing")

DEFAULT_DRIVER = "SOFATracer"
DEFAULT_GENERATOR = "mosntracing"
#: Drivers upstream accepts whose agents this sidecar cannot reach: spans go to stdout instead.
_AGENT_DRIVERS = {"jaeger": "Jaeger", "skywalking": "SkyWalking"}


class Tracer:
    """Where a sidecar's finished spans go: its exporters."""

    def __init__(self, exporters: list[Exporter]) -> None:
        self.exporters = exporters

    def finish(self, span: Span) -> None:
        """Hand a finished span to every exporter; never raises."""
        for exporter in self.exporters:
            try:
                exporter.export(span)
            except Exception:  # an exporter's bug must not fail the call
                log.exception("exporting a span failed")

    async def close(self) -> None:
        """Flush the exporters: the sidecar calls this when it stops."""
        for exporter in self.exporters:
            try:
                await exporter.close()
            except Exception:
                log.exception("closing a span exporter failed")


def _enabled(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"exporter must be a name or a list of names, got {value!r}", where)


def _settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """`config`, with upstream's nested `config.config` (its Zipkin layout) merged in."""
    settings = dict(section)
    nested = settings.pop("config", None)
    if isinstance(nested, Mapping):
        settings.update(_settings(nested))
    return settings


def build(config: RuntimeConfig) -> Tracer | None:
    """The tracer the `tracing` block asks for, None when tracing is off. The sidecar builds
    it once and hands it to the server's interceptor and to event delivery, so they share
    its exporters and one `close()` flushes every span."""
    tracing = config.tracing or {}
    if not _enabled(tracing.get("enable", False)):
        return None
    where = f"{config.source}: $.tracing" if config.source else "$.tracing"
    section = tracing.get("config") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("config must be an object", where)
    settings = _settings(section)
    driver = str(tracing.get("driver") or DEFAULT_DRIVER)
    kind = driver.lower()
    listed = _names(settings.get("exporter", settings.get("exporters")), f"{where}.config.exporter")
    generator = settings.get("generator", DEFAULT_GENERATOR)
    if generator != DEFAULT_GENERATOR:
        log.warning(
            "%s.config.generator %r is not known; using %r (traceparent, else SOFA ids)",
            where,
            generator,
            DEFAULT_GENERATOR,
        )
    if kind == "sofatracer":
        # As upstream's examples: no exporter named means stdout.
        names = listed if "exporter" in settings or "exporters" in settings else ["stdout"]
    elif kind == "zipkin":
        names = ["zipkin", *listed]
    elif kind in _AGENT_DRIVERS:
        log.warning(
            "tracing driver %r: no %s agent client in this sidecar; spans are written to stdout instead",
            driver,
            _AGENT_DRIVERS[kind],
        )
        names = ["stdout", *listed]
    else:
        raise ConfigError(
            f"unknown tracing driver {driver!r} (known: SOFATracer, zipkin, jaeger, skywalking)", f"{where}.driver"
        )
    exporters: list[Exporter] = []
    for name in dict.fromkeys(names):  # each once, in order
        factory = EXPORTERS.get(name)
        if factory is None:
            known = ", ".join(sorted(EXPORTERS))
            raise ConfigError(f"unknown exporter {name!r} (known: {known})", f"{where}.config.exporter")
        exporters.append(factory(settings, f"{where}.config"))
    log.info("tracing on: driver %s, exporters %s", driver, ", ".join(dict.fromkeys(names)) or "none")
    return Tracer(exporters)
