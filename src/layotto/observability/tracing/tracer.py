"""The tracer and its configuration: upstream's top-level `tracing` block, and Dapr's tracing
settings (a Configuration's `spec.tracing`, or the same keys beside upstream's).

    "tracing": {"enable": true, "driver": "SOFATracer",
                "config": {"generator": "mosntracing", "exporter": ["stdout"]}}
    "tracing": {"samplingRate": "1", "otel": {"endpointAddress": "127.0.0.1:4317", "isSecure": false}}

Built only when tracing is on (`enable`, or Dapr's keys without it): an untraced sidecar has no
tracer and pays nothing. The tracer decides which spans are sampled (`sampling.py`) and hands
those to its exporters; the gRPC interceptor makes a SERVER span per call, event delivery a
CONSUMER span per callback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from layotto.config.model import RuntimeConfig
from layotto.config.tracing import DAPR_TRACING_KEYS, sampling_rate
from layotto.errors import ConfigError
from layotto.observability.tracing.exporters import DEFAULT_SERVICE_NAME, EXPORTERS, Exporter, StdoutExporter
from layotto.observability.tracing.sampling import Sampler
from layotto.observability.tracing.span import Span

log = logging.getLogger("layotto.tracing")

DEFAULT_DRIVER = "SOFATracer"
DEFAULT_GENERATOR = "mosntracing"
#: Drivers upstream accepts whose agents this sidecar cannot reach: spans go to stdout instead.
_AGENT_DRIVERS = {"jaeger": "Jaeger", "skywalking": "SkyWalking"}


class Tracer:
    """Where a sidecar's finished spans go: its exporters, the sampled ones."""

    def __init__(self, exporters: list[Exporter], sampler: Sampler | None = None) -> None:
        self.exporters = exporters
        self.sampler = sampler or Sampler()
        #: Set the sampled flag of a span just started (before it calls anything on).
        self.sample = self.sampler.start

    def finish(self, span: Span) -> None:
        """Hand a finished span to every exporter when it is sampled; never raises."""
        if not self.sampler.keeps(span):
            return
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


def _upstream_exporters(tracing: Mapping[str, Any], where: str, dapr_exporters: bool) -> tuple[str, list[Exporter]]:
    """The driver and the exporters upstream's keys (`driver`, `config`) ask for."""
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
        # As upstream's examples: no exporter named means stdout (unless Dapr's keys name one).
        named = "exporter" in settings or "exporters" in settings
        names = listed if named or dapr_exporters else ["stdout"]
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
    return driver, exporters


def _dapr_exporters(tracing: Mapping[str, Any], service_name: str, where: str) -> list[tuple[str, Exporter]]:
    """The exporters Dapr's keys ask for: `otel`, `zipkin` and `stdout`, as daprd builds them."""
    found: list[tuple[str, Exporter]] = []
    otel = tracing.get("otel")
    if isinstance(otel, Mapping) and otel.get("endpointAddress"):
        from layotto.observability.tracing.otlp import otlp_from_config

        found.append(("otel", otlp_from_config(otel, service_name, f"{where}.otel")))
    zipkin = tracing.get("zipkin")
    if isinstance(zipkin, Mapping) and zipkin.get("endpointAddress"):
        from layotto.observability.tracing.exporters import zipkin_from_config

        settings = {"reporter_endpoint": zipkin["endpointAddress"], "service_name": service_name}
        found.append(("zipkin", zipkin_from_config(settings, f"{where}.zipkin")))
    if tracing.get("stdout") is True:
        found.append(("stdout", StdoutExporter()))
    return found


def _has_dapr_exporter(tracing: Mapping[str, Any]) -> bool:
    return tracing.get("stdout") is True or any(
        isinstance(tracing.get(key), Mapping) and tracing[key].get("endpointAddress") for key in ("otel", "zipkin")
    )


def build(config: RuntimeConfig) -> Tracer | None:
    """The tracer the `tracing` settings ask for, None when tracing is off. The sidecar builds
    it once and hands it to the server's interceptor and to event delivery, so they share
    its exporters and one `close()` flushes every span."""
    tracing = config.tracing or {}
    default_where = f"{config.source}: $.tracing" if config.source else "$.tracing"
    where = str(tracing.get("_source") or default_where)  # a Dapr Configuration's own location
    dapr = any(key in tracing for key in DAPR_TRACING_KEYS)
    # Upstream's shape has a switch; Dapr's has none: its settings are the switch.
    if not (_enabled(tracing["enable"]) if "enable" in tracing else dapr):
        return None
    rate: float | None = None
    if "samplingRate" in tracing:
        try:
            rate = sampling_rate(tracing["samplingRate"])
        except ValueError as exc:
            raise ConfigError(str(exc), f"{where}.samplingRate") from None
    upstream = any(key in tracing for key in ("enable", "driver", "config"))
    driver, exporters = "", list[Exporter]()
    if upstream:
        driver, exporters = _upstream_exporters(tracing, default_where, _has_dapr_exporter(tracing))
    service_name = config.app.app_id or DEFAULT_SERVICE_NAME
    names = [type(e).__name__ for e in exporters]
    for name, exporter in _dapr_exporters(tracing, service_name, where):
        if name == "stdout" and any(isinstance(e, StdoutExporter) for e in exporters):
            continue  # one stdout writer, whichever shape asked for it
        exporters.append(exporter)
        names.append(type(exporter).__name__)
    sampler = Sampler(rate)
    log.info(
        "tracing on: %s exporters %s, %r", f"driver {driver}," if driver else "", ", ".join(names) or "none", sampler
    )
    return Tracer(exporters, sampler)
