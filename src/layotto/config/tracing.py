"""Dapr's tracing settings (`TracingSpec`), read where either loader finds them: beside
upstream's keys in Layotto JSON's top-level `tracing` object, and as `spec.tracing` of a Dapr
`Configuration` resource in the resources folder.

    samplingRate: "1"
    stdout: true
    zipkin: {endpointAddress: "http://127.0.0.1:9411/api/v2/spans"}
    otel: {endpointAddress: "127.0.0.1:4317", isSecure: false, protocol: grpc, headers: "k=v", timeout: 10000}

The loaders check the shape here; `observability.tracing.tracer` turns the values into a sampler
and exporters. Keys come out under Dapr's spelling, whatever their case in Layotto JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from layotto.config.model import RuntimeConfig
from layotto.config.schema import Obj, describe
from layotto.errors import ConfigError

#: Dapr's TracingSpec keys.
DAPR_TRACING_KEYS = ("samplingRate", "stdout", "zipkin", "otel")
_ZIPKIN_KEYS = ("endpointAddress",)
_OTEL_KEYS = ("endpointAddress", "isSecure", "protocol", "headers", "timeout")
#: OTLP's transports, as Dapr's `otel.protocol` and OTEL_EXPORTER_OTLP_PROTOCOL name them.
OTEL_PROTOCOLS = {"grpc": "grpc", "http": "http", "http/protobuf": "http"}
#: daprd's sampling rate when a Configuration sets none (pkg/diagnostics/utils).
DAPR_DEFAULT_SAMPLING_RATE = "0.0001"
#: The longest one export may take, in ms: beyond an hour is a typo.
_MAX_TIMEOUT_MS = 3_600_000

#: The rest of a Configuration's spec: settings of daprd's own machinery that this runtime
#: does not have. Accepted so that daprd's files load; each one set is named in a warning.
_CONFIGURATION_SPEC_DAPR = (
    "httpPipeline",
    "appHttpPipeline",
    "mtls",
    "metric",
    "metrics",
    "secrets",
    "accessControl",
    "nameResolution",
    "features",
    "api",
    "components",
    "logging",
    "wasm",
    "workflow",
)


def sampling_rate(value: Any) -> float:
    """Dapr's `samplingRate` ("0".."1", a number too) as a float; ValueError saying why not."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"samplingRate must be a number from 0 to 1 (as a string), got {describe(value)}")
    try:
        rate = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        raise ValueError(f"samplingRate must be a number from 0 to 1, got {describe(value)}") from None
    if not math.isfinite(rate) or not 0 <= rate <= 1:
        raise ValueError(f"samplingRate must be a number from 0 to 1, got {describe(value)}")
    return rate


def otlp_headers(text: str) -> list[tuple[str, str]]:
    """`otel.headers` ("k1=v1,k2=v2", as OTEL_EXPORTER_OTLP_HEADERS) as pairs; ValueError if malformed."""
    from urllib.parse import unquote

    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f'headers must be "name=value" pairs separated by commas, got {describe(text)}')
        pairs.append((unquote(key.strip()).lower(), unquote(value.strip())))
    return pairs


def dapr_tracing(section: Obj) -> dict[str, Any]:
    """The TracingSpec keys of `section`, checked, under Dapr's names (absent keys left out).
    The caller checks which other keys `section` may have."""
    out: dict[str, Any] = {}
    rate = section.get("samplingRate")
    if rate is not None:
        try:
            sampling_rate(rate)
        except ValueError as exc:
            raise section.where("samplingRate").error(str(exc)) from None
        out["samplingRate"] = rate
    if section.find("stdout")[0] is not None:
        out["stdout"] = section.boolean("stdout")
    zipkin = section.mapping("zipkin")
    if zipkin is not None:
        zipkin.check_keys(_ZIPKIN_KEYS)
        endpoint = zipkin.text("endpointAddress")
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise zipkin.where("endpointAddress").error(
                f"endpointAddress must be an http(s) URL, got {describe(endpoint, section.at.yaml)}"
            )
        out["zipkin"] = {"endpointAddress": endpoint}
    otel = section.mapping("otel")
    if otel is not None:
        out["otel"] = _otel(otel)
    return out


def _otel(otel: Obj) -> dict[str, Any]:
    otel.check_keys(_OTEL_KEYS)
    out: dict[str, Any] = {"endpointAddress": otel.text("endpointAddress").strip()}
    if otel.find("isSecure")[0] is not None:
        out["isSecure"] = otel.boolean("isSecure")
    protocol = otel.text("protocol")
    if protocol:
        if protocol.lower() not in OTEL_PROTOCOLS:
            raise otel.where("protocol").error(f"protocol must be grpc or http, got {describe(protocol, otel.at.yaml)}")
        out["protocol"] = OTEL_PROTOCOLS[protocol.lower()]
    headers = otel.text("headers")
    if headers:
        try:
            otlp_headers(headers)
        except ValueError as exc:
            raise otel.where("headers").error(str(exc)) from None
        out["headers"] = headers
    if otel.find("timeout")[0] is not None:
        out["timeout"] = otel.integer("timeout", low=1, high=_MAX_TIMEOUT_MS, what="a number of milliseconds")
    return out


@dataclass
class TracingResource:
    """`spec.tracing` of a Dapr Configuration resource, as the tracer reads it."""

    settings: dict[str, Any]
    source: str


def dapr_configuration(top: Obj, warnings: list[str]) -> TracingResource | None:
    """A Dapr `Configuration` document: its `spec.tracing` (None without one); the settings of
    daprd's other machinery are named in a warning and ignored."""
    top.check_keys(("apiVersion", "kind", "metadata", "spec"))
    spec = top.mapping("spec")
    if spec is None:
        return None
    spec.check_keys(("tracing",), _CONFIGURATION_SPEC_DAPR)
    ignored = [key for key in _CONFIGURATION_SPEC_DAPR if spec.get(key) not in (None, {}, [])]
    if ignored:
        warnings.append(f"{top.at}: Configuration spec.{', spec.'.join(ignored)} not supported here; ignored")
    tracing = spec.mapping("tracing")
    if tracing is None:
        return None
    tracing.check_keys(DAPR_TRACING_KEYS)
    settings = dapr_tracing(tracing)
    # As daprd reads its Configuration: no rate given is its default, not "every trace".
    settings.setdefault("samplingRate", DAPR_DEFAULT_SAMPLING_RATE)
    return TracingResource(settings, str(tracing.at))


def merge_tracing(cfg: RuntimeConfig, resource: TracingResource) -> None:
    """Add a Configuration's tracing to what the Layotto JSON set; one place may set Dapr's keys."""
    if any(key in cfg.tracing for key in DAPR_TRACING_KEYS):
        where = cfg.tracing.get("_source") or cfg.source or "the Layotto config"
        raise ConfigError(f"tracing is set here and already in {where}; set it in one place", resource.source)
    cfg.tracing = {**cfg.tracing, **resource.settings, "_source": resource.source}
