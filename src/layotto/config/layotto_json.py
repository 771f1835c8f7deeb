"""Loader for upstream Layotto's JSON config (a MOSN bootstrap file), read as it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from layotto.config.model import DEFAULT_CALLBACK_HOST, AppConfig, ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError

#: grpc_config key -> block, for entries shaped {name: {type, metadata, ...}}.
_BLOCK_KEYS: dict[str, str] = {
    "hellos": "hello",
    "state": "state",
    "config_store": "configuration",
    "sequencer": "sequencer",
    "lock": "lock",
    "pub_subs": "pubsub",
    "bindings": "bindings",
    "secret_store": "secretstores",
    "file": "file",
    "oss": "oss",
    "cryption": "cryption",
    "email": "email",
    "phone": "phone",
    "sms": "sms",
    # layotto's own: how an app id resolves to another sidecar for InvokeService.
    "name_resolution": "nameresolution",
}
#: Keys of a component entry that are not metadata and not the type.
_ENTRY_EXTRAS = ("biggerthan", "secret_ref", "component_ref", "version")


def _get(obj: dict[str, Any], key: str, default: Any = None) -> Any:
    """Case-insensitive lookup, as Go's encoding/json matches struct fields."""
    if key in obj:
        return obj[key]
    lowered = key.lower()
    for k, v in obj.items():
        if k.lower() == lowered:
            return v
    return default


def _expect(value: Any, kind: type, path: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{what} must be a JSON {kind.__name__ if kind is not dict else 'object'}", path)
    return value


def load_file(path: str | Path) -> RuntimeConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", str(path)) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", str(path)) from None
    return load_document(doc, source=str(path))


def load_document(doc: Any, source: str = "<config>") -> RuntimeConfig:
    cfg = RuntimeConfig(source=source, actuator_address=None)
    root = _expect(doc, dict, f"{source}: $", "the config")
    servers = _expect(_get(root, "servers", []), list, f"{source}: $.servers", "servers")
    found_grpc = False
    for si, server in enumerate(servers):
        spath = f"$.servers[{si}]"
        _expect(server, dict, f"{source}: {spath}", "a server")
        listeners = _expect(_get(server, "listeners", []), list, f"{source}: {spath}.listeners", "listeners")
        for li, listener in enumerate(listeners):
            lpath = f"{spath}.listeners[{li}]"
            _expect(listener, dict, f"{source}: {lpath}", "a listener")
            address = str(_get(listener, "address", ""))
            stream_filters = _get(listener, "stream_filters", []) or []
            filter_types = {str(_get(f, "type", "")) for f in stream_filters if isinstance(f, dict)}
            chains = _get(listener, "filter_chains", []) or []
            for ci, chain in enumerate(chains):
                for fi, flt in enumerate(_get(chain, "filters", []) or []):
                    fpath = f"{lpath}.filter_chains[{ci}].filters[{fi}]"
                    if not isinstance(flt, dict) or _get(flt, "type") != "grpc":
                        continue
                    if found_grpc:
                        cfg.warnings.append(f"{source}: {fpath}: a second grpc filter is ignored")
                        continue
                    found_grpc = True
                    if address:
                        cfg.grpc_address = address
                    cfg.grpc_network = str(_get(listener, "network", "tcp") or "tcp")
                    cfg.stream_filters = [f for f in stream_filters if isinstance(f, dict)]
                    grpc_config = _get(_get(flt, "config", {}) or {}, "grpc_config", {})
                    _load_grpc_config(
                        cfg,
                        _expect(grpc_config, dict, f"{source}: {fpath}.config.grpc_config", "grpc_config"),
                        source,
                        f"{fpath}.config.grpc_config",
                    )
            if "actuator_filter" in filter_types and address:
                cfg.actuator_address = address
    if not found_grpc:
        raise ConfigError('no listener has a filter of type "grpc" (the runtime\'s API server)', f"{source}: $.servers")
    cfg.tracing = dict(_get(root, "tracing", {}) or {})
    cfg.metrics = dict(_get(root, "metrics", {}) or {})
    cfg.dapr_http_address = _dapr_http_address(_get(root, "dapr_http"), source)
    return cfg


def _dapr_http_address(section: Any, source: str) -> str | None:
    """`"dapr_http": {"address": "host:port"}`: where Dapr's HTTP API listens (absent: off)."""
    if section is None:
        return None
    _expect(section, dict, f"{source}: $.dapr_http", "dapr_http")
    address = _get(section, "address")
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError('address must be a "host:port" string', f"{source}: $.dapr_http.address")
    return str(address)


def _load_grpc_config(cfg: RuntimeConfig, grpc_config: dict[str, Any], source: str, base: str) -> None:
    for key, value in grpc_config.items():
        path = f"{base}.{key}"
        lkey = key.lower()
        if lkey == "app":
            _expect(value, dict, f"{source}: {path}", "app")
            port = _get(value, "grpc_callback_port", 0) or 0
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError("grpc_callback_port must be a port number", f"{source}: {path}.grpc_callback_port")
            cfg.app = AppConfig(
                app_id=str(_get(value, "app_id", "") or ""),
                grpc_callback_port=port,
                grpc_callback_host=str(_get(value, "grpc_callback_host", "") or DEFAULT_CALLBACK_HOST),
                http_port=int(_get(value, "http_port", 0) or 0),
            )
        elif lkey == "rpcs":
            # Upstream routes InvokeService through MOSN channels configured here; layotto
            # resolves app ids with `name_resolution` components instead, so this is not needed.
            _expect(value, dict, f"{source}: {path}", "rpcs")
            cfg.warnings.append(
                f"{source}: {path}: MOSN rpc channels are not used; InvokeService resolves app ids through"
                " `name_resolution` components (see docs/invoke.md)"
            )
        elif lkey == "custom_component":
            _expect(value, dict, f"{source}: {path}", "custom_component")
            for kind, named in value.items():
                _expect(named, dict, f"{source}: {path}.{kind}", "a custom component kind")
                for name, entry in named.items():
                    spec = _component("custom", name, entry, source, f"{path}.{kind}.{name}")
                    spec.extras["kind"] = kind
                    cfg.components.append(spec)
        elif lkey == "extends":
            continue
        elif lkey in _BLOCK_KEYS:
            block = _BLOCK_KEYS[lkey]
            _expect(value, dict, f"{source}: {path}", key)
            for name, entry in value.items():
                cfg.components.append(_component(block, name, entry, source, f"{path}.{name}"))
        else:
            cfg.warnings.append(f"{source}: {path}: unknown grpc_config key '{key}' is ignored")


def _component(block: str, name: str, entry: Any, source: str, path: str) -> ComponentSpec:
    _expect(entry, dict, f"{source}: {path}", "a component entry")
    type_name = _get(entry, "type")
    if not isinstance(type_name, str) or not type_name:
        raise ConfigError('component has no "type"', f"{source}: {path}")
    raw_md = _get(entry, "metadata", {})
    metadata: dict[str, Any]
    if isinstance(raw_md, dict):
        metadata = dict(raw_md)
    elif raw_md is None:
        metadata = {}
    else:
        # `file` components take free-form metadata (often a list of endpoints).
        metadata = {"__raw__": raw_md}
    extras: dict[str, Any] = {}
    for k, v in entry.items():
        lk = k.lower()
        if lk in _ENTRY_EXTRAS:
            extras[k if lk != "biggerthan" else "biggerThan"] = v
        elif lk not in ("type", "metadata"):
            # e.g. hellos' "hello", config_store's "address"/"timeout"/"store_name".
            metadata.setdefault(k, v)
    return ComponentSpec(
        block=block, name=name, type=type_name, metadata=metadata, extras=extras, source=f"{source}: {path}"
    )
