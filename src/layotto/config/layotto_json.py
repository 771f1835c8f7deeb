"""Loader for upstream Layotto's JSON config (a MOSN bootstrap file), read as it is."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layotto.config.model import (
    DEFAULT_CALLBACK_HOST,
    DEFAULT_WASM_MEMORY,
    DEFAULT_WASM_TIMEOUT,
    AppConfig,
    ComponentSpec,
    RuntimeConfig,
    WasmFunctionSpec,
)
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
    plugins = _wasm_plugins(_get(root, "wasm_global_plugins"), source)
    cfg.wasm.source = source
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
            if filter_types & {WASM_FILTER, WASM_ADMIN_FILTER}:
                _load_wasm_filters(cfg, stream_filters, address, plugins, source, lpath)
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
    return _host_port(_get(section, "address"), f"{source}: $.dapr_http.address")


def _host_port(address: Any, where: str) -> str:
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError('address must be a "host:port" string', where)
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


#: Upstream's stream filters: the functions' own (`pkg/wasm`) and their management endpoints'.
WASM_FILTER = "Layotto"
WASM_ADMIN_FILTER = "wasm_filter"
#: The engines upstream names; wasmtime runs modules built for either.
_WASM_ENGINES = ("wasmtime", "wasmer")


def _wasm_plugins(section: Any, source: str) -> dict[str, dict[str, Any]]:
    """MOSN's `wasm_global_plugins`, by `plugin_name`: what a `from_wasm_plugin` entry names."""
    if section is None:
        return {}
    where = f"{source}: $.wasm_global_plugins"
    plugins: dict[str, dict[str, Any]] = {}
    for i, plugin in enumerate(_expect(section, list, where, "wasm_global_plugins")):
        _expect(plugin, dict, f"{where}[{i}]", "a wasm plugin")
        name = _get(plugin, "plugin_name")
        if not isinstance(name, str) or not name:
            raise ConfigError('a wasm plugin needs a "plugin_name"', f"{where}[{i}]")
        plugins[name] = {**plugin, "_where": f"{where}[{i}]"}
    return plugins


def _load_wasm_filters(
    cfg: RuntimeConfig,
    stream_filters: list[Any],
    address: str,
    plugins: Mapping[str, dict[str, Any]],
    source: str,
    lpath: str,
) -> None:
    for fi, flt in enumerate(stream_filters):
        kind = _get(flt, "type") if isinstance(flt, dict) else None
        fpath = f"{lpath}.stream_filters[{fi}]"
        if kind not in (WASM_FILTER, WASM_ADMIN_FILTER):
            continue
        listen = _host_port(address, f"{source}: {lpath}.address")
        if kind == WASM_ADMIN_FILTER:
            if cfg.wasm.admin_address is not None:
                cfg.warnings.append(f"{source}: {fpath}: a second wasm_filter listener is ignored")
            else:
                cfg.wasm.admin_address = listen
            continue
        cfg.wasm.addresses.append(listen)
        where = f"{source}: {fpath}.config"
        entries = _expect(_get(flt, "config", {}) or {}, dict, where, "the Layotto filter's config")
        for key, entry in entries.items():
            spec = wasm_function(entry, key, f"{where}.{key}", plugins)
            if spec.engine != "wasmtime":
                cfg.warnings.append(f"{spec.source}: engine {spec.engine!r} is run by wasmtime")
            cfg.wasm.functions.append(spec)


def _positive(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{what} must be a positive number", where)
    return float(value)


def wasm_function(
    entry: Any, key: str, where: str, plugins: Mapping[str, dict[str, Any]] | None = None
) -> WasmFunctionSpec:
    """One function entry, as upstream reads it (`pkg/wasm/config.go`): its `vm_config` (or the
    `from_wasm_plugin` it names), `instance_num` (the CPU count when not positive),
    `root_context_id` (1) and its string values as the plugin configuration. `limits` is
    this runtime's: `timeout_ms` per call and `memory_mb` per instance."""
    _expect(entry, dict, where, "a WASM function entry")
    plugin_name = _get(entry, "from_wasm_plugin", "")
    holder, holder_where = entry, where
    if plugin_name:
        plugin = (plugins or {}).get(str(plugin_name))
        if plugin is None:
            raise ConfigError(f"from_wasm_plugin {plugin_name!r} names no plugin of wasm_global_plugins", where)
        holder, holder_where = plugin, str(plugin["_where"])
    vm = _get(holder, "vm_config")
    if vm is None:
        raise ConfigError('a WASM function needs a "vm_config"', holder_where)
    vm_where = f"{holder_where}.vm_config"
    _expect(vm, dict, vm_where, "vm_config")
    engine = str(_get(vm, "engine", "") or "wasmtime").lower()
    if engine not in _WASM_ENGINES:
        raise ConfigError(f"engine {engine!r} is not one of {list(_WASM_ENGINES)}", f"{vm_where}.engine")
    path = _get(vm, "path")
    if not isinstance(path, str) or not path:
        hint = " (a vm_config url is not fetched)" if _get(vm, "url") else ""
        raise ConfigError(f'vm_config needs the "path" of a .wasm file{hint}', vm_where)
    instance_num = _get(holder, "instance_num", 0) or 0
    if isinstance(instance_num, bool) or not isinstance(instance_num, int):
        raise ConfigError("instance_num must be an integer", f"{holder_where}.instance_num")
    root_context_id = _get(entry, "root_context_id", 1)
    if isinstance(root_context_id, bool) or not isinstance(root_context_id, int):
        raise ConfigError("root_context_id must be an integer", f"{where}.root_context_id")
    limits = _expect(_get(entry, "limits", {}) or {}, dict, f"{where}.limits", "limits")
    timeout_ms = _get(limits, "timeout_ms")
    memory_mb = _get(limits, "memory_mb")
    name = _get(entry, "name", key)
    return WasmFunctionSpec(
        name=name if isinstance(name, str) and name else key,
        path=path,
        engine=engine,
        instance_num=instance_num if instance_num > 0 else os.cpu_count() or 1,
        root_context_id=root_context_id,
        plugin_config={k: v for k, v in entry.items() if isinstance(v, str) and k != "from_wasm_plugin"},
        vm_config={
            "Engine": engine,
            "Path": path,
            "Url": str(_get(vm, "url", "") or ""),
            "Md5": str(_get(vm, "md5", "") or ""),
            "Cpu": str(_get(vm, "cpu", 0) or 0),
            "Mem": str(_get(vm, "mem", 0) or 0),
        },
        timeout=DEFAULT_WASM_TIMEOUT
        if timeout_ms is None
        else _positive(timeout_ms, f"{where}.limits.timeout_ms", "timeout_ms") / 1000,
        memory_limit=DEFAULT_WASM_MEMORY
        if memory_mb is None
        else int(_positive(memory_mb, f"{where}.limits.memory_mb", "memory_mb") * 1024 * 1024),
        source=where,
    )
