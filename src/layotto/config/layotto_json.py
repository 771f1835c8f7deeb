"""Loader for upstream Layotto's JSON config (a MOSN bootstrap file), read as it is.

Each section is checked against upstream's shape (`schema.Obj`): a value of the wrong type, or
a key that neither this runtime nor MOSN/Layotto knows, is a ConfigError naming the JSON path
(and, for a key, the closest known one). MOSN's own settings, which a sidecar that is not a
proxy has no use for (routers, cluster_manager, access logs, ...), are accepted and ignored,
but for the grpc listener's `tls_context`, which is its TLS; component metadata and the
configs of filters run by MOSN alone are free-form.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layotto.config.foreign import ignored_keys
from layotto.config.model import (
    DEFAULT_CALLBACK_HOST,
    DEFAULT_WASM_MEMORY,
    DEFAULT_WASM_TIMEOUT,
    AppConfig,
    ComponentRef,
    ComponentSpec,
    RuntimeConfig,
    WasmFunctionSpec,
)
from layotto.config.resiliency import check_references, parse_spec
from layotto.config.schema import MAX_DEPTH, At, Obj, check_tree, decode, describe, suggest, unknown_key
from layotto.config.tracing import DAPR_TRACING_KEYS, dapr_tracing
from layotto.errors import ConfigError

if TYPE_CHECKING:
    from layotto.config.tls import ServerTls

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
_GRPC_CONFIG_KEYS = (*_BLOCK_KEYS, "app", "rpcs", "custom_component")
#: grpc_config key -> block: what upstream's Lifecycle.ApplyConfiguration calls a component's kind.
BLOCK_KEYS: Mapping[str, str] = _BLOCK_KEYS
#: The grpc_config key of custom components; their kind in ApplyConfiguration is `custom_component.<kind>`.
CUSTOM_KEY = "custom_component"
#: Keys older upstream releases read, kept by some of upstream's example files; today's
#: upstream ignores them, and so does this runtime, with a warning naming the new key.
_OLD_GRPC_CONFIG_KEYS = {"files": "file", "config_stores": "config_store", "secretstores": "secret_store"}
#: grpc_config keys upstream reads that mean nothing here (`extends`: its extension configs).
_GRPC_CONFIG_IGNORED = ("extends",)

_ROOT_KEYS = ("servers", "tracing", "metrics", "dapr_http", "wasm_global_plugins", "resiliency")
_LISTENER_KEYS = ("name", "address", "network", "filter_chains", "stream_filters")
_CHAIN_MOSN = ("match", "tls_context", "tls_context_set")
_GRPC_FILTER_KEYS = ("server_name", "grpc_config")
_GRPC_FILTER_MOSN = ("graceful_stop_timeout",)
_APP_KEYS = ("app_id", "grpc_callback_port", "grpc_callback_host", "http_port")
#: Keys of a component entry that are not metadata; any other key is metadata (hellos' "hello",
#: config_store's "address"/"timeout"/"store_name"), unless it is a near miss of one of these.
_ENTRY_KEYS = ("type", "metadata", "biggerThan", "secret_ref", "component_ref", "version")
_SECRET_REF_KEYS = ("store_name", "key", "sub_key", "inject_as")
_COMPONENT_REF_KEYS = ("secret_store", "config_store")
_TRACING_KEYS = ("enable", "driver", "config")
_TRACING_OLD = ("tracer",)  # MOSN's deprecated name of `driver`
_METRICS_MOSN = ("sinks", "stats_matcher", "shm_zone", "shm_size", "flush_mosn", "lazy_flush", "sample", "ewma")

#: Upstream's stream filters: the functions' own (`pkg/wasm`) and their management endpoints'.
WASM_FILTER = "Layotto"
WASM_ADMIN_FILTER = "wasm_filter"
#: The stream filters this runtime acts on; a near miss of one is a typo, not a MOSN filter.
_STREAM_FILTERS = ("actuator_filter", WASM_FILTER, WASM_ADMIN_FILTER, "flowControlFilter", "grpc_metric")
#: The engines upstream names; wasmtime runs modules built for either.
_WASM_ENGINES = ("wasmtime", "wasmer")
_WASM_PLUGIN_KEYS = ("plugin_name", "vm_config", "instance_num")
_VM_CONFIG_KEYS = ("engine", "path", "url", "md5", "cpu", "mem")
_FUNCTION_KEYS = ("name", "instance_num", "root_context_id", "vm_config", "from_wasm_plugin", "limits")
_LIMITS_KEYS = ("timeout_ms", "memory_mb")
#: Bounds beyond which a function's settings are mistakes: wasm32's 4 GiB of memory, a day per call.
_MAX_MEMORY_MB = 4096
_MAX_TIMEOUT_MS = 86_400_000
_MAX_INSTANCES = 1024
_INT32 = (-(2**31), 2**31 - 1)


def load_file(path: str | Path) -> RuntimeConfig:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", str(path)) from None
    except ValueError:  # a NUL in the path, which no file name has
        raise ConfigError("cannot read config file: the path has a NUL character", repr(str(path))) from None
    return load_document(parse(decode(data, str(path)), str(path)), source=str(path))


class _NotJsonError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    # Python's json takes NaN and Infinity; JSON (and upstream's Go) does not.
    raise _NotJsonError(f"{name} is not a JSON value")


def parse(text: str, where: str) -> Any:
    """JSON text -> its value; anything that is not JSON is a ConfigError naming where."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", where) from None
    except _NotJsonError as exc:
        raise ConfigError(f"malformed JSON: {exc}", where) from None
    except RecursionError:
        raise ConfigError(f"malformed JSON: nested deeper than {MAX_DEPTH} levels", where) from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise ConfigError("malformed JSON: a number has too many digits", where) from None


@dataclass
class _Listeners:
    """What the walk over every listener gathers."""

    plugins: Mapping[str, Obj]
    grpc_found: bool = False
    #: Network filter types seen, for a hint when none is "grpc".
    filter_types: list[str] = field(default_factory=list)


def load_document(doc: Any, source: str = "<config>") -> RuntimeConfig:
    at = At(source, "$")
    check_tree(doc, at)
    root = Obj(doc, at, "the config")
    root.check_keys(_ROOT_KEYS, ignored_keys("mosn", "root"))
    cfg = RuntimeConfig(source=source, actuator_address=None)
    cfg.wasm.source = source
    seen = _Listeners(plugins=_wasm_plugins(root))
    for server in root.objects("servers", "a server"):
        server.check_keys(("listeners",), ignored_keys("mosn", "server"))
        for listener in server.objects("listeners", "a listener"):
            _listener(cfg, listener, seen)
    if not seen.grpc_found:
        close = suggest("grpc", seen.filter_types, cutoff=0.6)
        hint = f'; a filter has type {json.dumps(close)}: did you mean "grpc"?' if close else ""
        raise ConfigError(
            f'no listener has a filter of type "grpc" (the runtime\'s API server){hint}', f"{source}: $.servers"
        )
    cfg.tracing = _tracing(root)
    cfg.metrics = _metrics(root)
    cfg.dapr_http_address = _dapr_http_address(root)
    # Dapr's Resiliency `spec` ({policies, targets}), as a Resiliency resource has it.
    resiliency = root.mapping("resiliency")
    if resiliency is not None:
        cfg.resiliency = parse_spec(resiliency, cfg.warnings)
        check_references(cfg.resiliency)
    return cfg


def _listener(cfg: RuntimeConfig, listener: Obj, seen: _Listeners) -> None:
    listener.check_keys(_LISTENER_KEYS, ignored_keys("mosn", "listener"))
    listener.text("name")
    address = listener.text("address")
    network = listener.text("network") or "tcp"
    stream_filters = listener.objects("stream_filters", "a stream filter")
    kinds = {_stream_filter(flt) for flt in stream_filters}
    for chain in listener.objects("filter_chains", "a filter chain"):
        chain.check_keys(("filters",), _CHAIN_MOSN)
        for flt in chain.objects("filters", "a filter"):
            flt.check_keys(("type", "config"))
            kind = flt.text("type", required=True, nonempty=True)
            config = flt.mapping("config", "the filter's config") or Obj({}, flt.where("config"), "config")
            if kind != "grpc":
                seen.filter_types.append(kind)
                continue
            if seen.grpc_found:
                cfg.warnings.append(f"{flt.at}: a second grpc filter is ignored")
                continue
            seen.grpc_found = True
            if network not in ("tcp", "unix"):
                raise listener.where("network").error(
                    f'network of the grpc listener must be "tcp" or "unix", got {describe(network)}'
                )
            if address:
                if network == "tcp":
                    _port_of(address, listener.where("address"))
                cfg.grpc_address = address
            cfg.grpc_network = network
            cfg.stream_filters = [flt.value for flt in stream_filters]
            _grpc_filter(cfg, config)
            cfg.tls = _tls_context(chain, listener, cfg.warnings)
    if "actuator_filter" in kinds and address:
        cfg.actuator_address = _host_port(address, listener.where("address"))
    if kinds & {WASM_FILTER, WASM_ADMIN_FILTER}:
        _load_wasm_filters(cfg, stream_filters, listener, seen.plugins)


def _tls_context(chain: Obj, listener: Obj, warnings: list[str]) -> ServerTls | None:
    """The grpc listener's `tls_context` (or the first of `tls_context_set`): TLS of the API
    listeners (config/tls.py). Other listeners' are MOSN's, and ignored."""
    from layotto.config.tls import from_mosn

    context = chain.mapping("tls_context", "tls_context")
    contexts = chain.objects("tls_context_set", "a tls_context")
    if context is None and contexts:
        context = contexts[0]
        if len(contexts) > 1:
            warnings.append(f"{chain.where('tls_context_set')}: only the first tls_context is served")
    found = from_mosn(context, warnings) if context is not None else None
    if found is not None and listener.get("inspector") is True:
        warnings.append(f"{listener.where('inspector')}: with TLS on, plaintext connections are refused")
    return found


def _stream_filter(flt: Obj) -> str:
    flt.check_keys(("type", "config"), ("go_plugin_config",))
    kind = flt.text("type", required=True, nonempty=True)
    flt.mapping("config", "the stream filter's config")
    if kind not in _STREAM_FILTERS:
        # Other types are MOSN's own filters, which this runtime does not run.
        close = suggest(kind, _STREAM_FILTERS, cutoff=0.8)
        if close is not None:
            raise flt.where("type").error(
                f"unknown stream filter type {json.dumps(kind)}; did you mean {json.dumps(close)}?"
            )
    return kind


def _grpc_filter(cfg: RuntimeConfig, config: Obj) -> None:
    config.check_keys(_GRPC_FILTER_KEYS, _GRPC_FILTER_MOSN)
    config.text("server_name")
    grpc_config = config.mapping("grpc_config") or Obj({}, config.where("grpc_config"), "grpc_config")
    _load_grpc_config(cfg, grpc_config)


def _port_of(address: str, where: At) -> int:
    _, colon, port = address.rpartition(":")
    if not (colon and port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise where.error(
            f'address must be "host:port" (a unix socket path with "network": "unix"), got {describe(address)}'
        )
    return int(port)


def _host_port(address: Any, where: At) -> str:
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not (host and port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise where.error(f'address must be a "host:port" string, got {describe(address)}')
    return str(address)


def _dapr_http_address(root: Obj) -> str | None:
    """`"dapr_http": {"address": "host:port"}`: where Dapr's HTTP API listens (absent: off)."""
    section = root.mapping("dapr_http")
    if section is None:
        return None
    section.check_keys(("address",))
    return _host_port(section.get("address"), section.where("address"))


def _tracing(root: Obj) -> dict[str, Any]:
    section = root.mapping("tracing")
    if section is None:
        return {}
    # Upstream's keys, and beside them Dapr's (sampling, the OTLP exporter: config/tracing.py).
    section.check_keys((*_TRACING_KEYS, *DAPR_TRACING_KEYS), _TRACING_OLD)
    enable = section.get("enable")
    if enable is not None and not isinstance(enable, bool | str):
        raise section.where("enable").error(f'enable must be true, false or "true", got {describe(enable)}')
    section.text("driver")
    section.text("tracer")
    section.mapping("config")
    # Under the names the tracer reads, whatever their case here.
    found = {key: section.get(key) for key in (*_TRACING_KEYS, *_TRACING_OLD) if section.find(key)[0] is not None}
    return {**found, **dapr_tracing(section)}


def _metrics(root: Obj) -> dict[str, Any]:
    section = root.mapping("metrics")
    if section is None:
        return {}
    section.check_keys((), _METRICS_MOSN)
    section.items("sinks")
    return dict(section.value)


def _load_grpc_config(cfg: RuntimeConfig, grpc_config: Obj) -> None:
    grpc_config.check_keys(_GRPC_CONFIG_KEYS, _GRPC_CONFIG_IGNORED, legacy=_OLD_GRPC_CONFIG_KEYS)
    for key, value in grpc_config.value.items():
        where = grpc_config.at.key(grpc_config.value, key)
        lkey = key.lower()
        if value is None:  # as Go reads null: nothing configured
            continue
        if lkey == "app":
            cfg.app = _app(Obj(value, where, "app"))
        elif lkey == "rpcs":
            # Upstream routes InvokeService through MOSN channels configured here; layotto
            # resolves app ids with `name_resolution` components instead, so this is not needed.
            Obj(value, where, "rpcs")
            cfg.warnings.append(
                f"{where}: MOSN rpc channels are not used; InvokeService resolves app ids through"
                " `name_resolution` components (see docs/invoke.md)"
            )
        elif lkey == "custom_component":
            kinds = Obj(value, where, "custom_component")
            for kind, named in value.items():
                if named is None:
                    continue
                group = Obj(named, kinds.at.key(value, kind), "a custom component kind")
                for name, entry in named.items():
                    spec = _component("custom", name, entry, group.at.key(named, name))
                    spec.kind = kind
                    cfg.components.append(spec)
        elif lkey == "extends":
            Obj(value, where, "extends")
        elif lkey in _OLD_GRPC_CONFIG_KEYS:
            new = _OLD_GRPC_CONFIG_KEYS[lkey]
            cfg.warnings.append(
                f"{where}: {key!r} is the old name of {new!r}, which upstream reads instead;"
                f" its components are not loaded (rename it to {new!r})"
            )
        else:
            block = _BLOCK_KEYS[lkey]
            Obj(value, where, key)
            for name, entry in value.items():
                cfg.components.append(_component(block, name, entry, where.key(value, name)))


def _app(app: Obj) -> AppConfig:
    app.check_keys(_APP_KEYS)
    return AppConfig(
        app_id=app.text("app_id"),
        grpc_callback_port=app.integer("grpc_callback_port", low=0, high=65535, what="a port number"),
        grpc_callback_host=app.text("grpc_callback_host") or DEFAULT_CALLBACK_HOST,
        http_port=app.integer("http_port", low=0, high=65535, what="a port number"),
    )


def _component(block: str, name: str, entry: Any, at: At) -> ComponentSpec:
    obj = Obj(entry, at, "a component entry")
    type_name = obj.get("type")
    if type_name is None:
        raise at.error('component has no "type"')
    if not isinstance(type_name, str) or not type_name:
        raise obj.where("type").error(f"type must be a component type name, got {describe(type_name)}")
    raw_md = obj.get("metadata")
    metadata: dict[str, Any]
    if raw_md is None:
        metadata = {}
    elif isinstance(raw_md, dict):
        metadata = dict(raw_md)
    elif block == "file":
        # Upstream hands a file component its metadata as raw JSON (often a list of endpoints).
        metadata = {"__raw__": raw_md}
    else:
        raise obj.where("metadata").error(f"metadata must be a JSON object, got {describe(raw_md)}")
    extras: dict[str, Any] = {}
    component_ref: ComponentRef | None = None
    canonical = {k.lower(): k for k in _ENTRY_KEYS}
    for key, value in entry.items():
        known = canonical.get(key.lower())
        where = at.key(entry, key)
        if known in ("type", "metadata"):
            continue
        if known == "component_ref":
            component_ref = _component_ref(value, where)
            continue
        if known is not None:
            if value is not None:
                extras[known] = _extra(known, value, where)
            continue
        if suggest(key, _ENTRY_KEYS, cutoff=0.8) is not None:
            raise unknown_key(where, key, _ENTRY_KEYS)
        # e.g. hellos' "hello", config_store's "address"/"timeout"/"store_name".
        metadata.setdefault(key, value)
    return ComponentSpec(
        block=block,
        name=name,
        type=type_name,
        metadata=metadata,
        extras=extras,
        source=str(at),
        component_ref=component_ref,
    )


def _component_ref(value: Any, at: At) -> ComponentRef | None:
    """`{config_store, secret_store}`: names of components of those blocks ("" or absent: none)."""
    if value is None:
        return None
    ref = Obj(value, at, "component_ref")
    ref.check_keys(_COMPONENT_REF_KEYS)
    found = ComponentRef(config_store=ref.text("config_store"), secret_store=ref.text("secret_store"))
    return found if found.config_store or found.secret_store else None


def _extra(key: str, value: Any, at: At) -> Any:
    if key == "biggerThan":  # its values are the sequencer's to check
        return dict(Obj(value, at, key).value)
    if key == "version":
        if not isinstance(value, str):
            raise at.error(f"version must be a string, got {describe(value)}")
        return value
    if not isinstance(value, list):
        raise at.error(f"secret_ref must be a JSON array of {{store_name, key, ...}} objects, got {describe(value)}")
    refs = []
    for index, item in enumerate(value):
        ref = Obj(item, at.item(value, index), "a secret_ref entry")
        ref.check_keys(_SECRET_REF_KEYS)
        entry = {k: ref.text(k, required=True, nonempty=True) for k in ("store_name", "key")}
        entry.update({k: ref.text(k) for k in ("sub_key", "inject_as") if ref.find(k)[0] is not None})
        refs.append(entry)
    return refs


def _wasm_plugins(root: Obj) -> dict[str, Obj]:
    """MOSN's `wasm_global_plugins`, by `plugin_name`: what a `from_wasm_plugin` entry names."""
    plugins: dict[str, Obj] = {}
    for plugin in root.objects("wasm_global_plugins", "a wasm plugin"):
        plugin.check_keys(_WASM_PLUGIN_KEYS)
        name = plugin.get("plugin_name")
        if not isinstance(name, str) or not name:
            raise plugin.at.error('a wasm plugin needs a "plugin_name"')
        plugins[name] = plugin
    return plugins


def _load_wasm_filters(
    cfg: RuntimeConfig, stream_filters: list[Obj], listener: Obj, plugins: Mapping[str, Obj]
) -> None:
    for flt in stream_filters:
        kind = flt.text("type")
        if kind not in (WASM_FILTER, WASM_ADMIN_FILTER):
            continue
        listen = _host_port(listener.get("address"), listener.where("address"))
        if kind == WASM_ADMIN_FILTER:
            if cfg.wasm.admin_address is not None:
                cfg.warnings.append(f"{flt.at}: a second wasm_filter listener is ignored")
            else:
                cfg.wasm.admin_address = listen
            continue
        cfg.wasm.addresses.append(listen)
        entries = flt.mapping("config", "the Layotto filter's config") or Obj({}, flt.where("config"), "config")
        for key, entry in entries.value.items():
            spec = wasm_function(entry, key, entries.at.key(entries.value, key), plugins)
            if spec.engine != "wasmtime":
                cfg.warnings.append(f"{spec.source}: engine {spec.engine!r} is run by wasmtime")
            cfg.wasm.functions.append(spec)


def wasm_function(entry: Any, key: str, where: str | At, plugins: Mapping[str, Obj] | None = None) -> WasmFunctionSpec:
    """One function entry, as upstream reads it (`pkg/wasm/config.go`): its `vm_config` (or the
    `from_wasm_plugin` it names), `instance_num` (the CPU count when not positive),
    `root_context_id` (1) and its string values as the plugin configuration. `limits` is
    this runtime's: `timeout_ms` per call and `memory_mb` per instance."""
    if isinstance(where, At):
        at = where
    else:  # an install request's body, which no loader has checked
        at = At("", where)
        check_tree(entry, at)
    fn = Obj(entry, at, "a WASM function entry")
    for name, value in entry.items():
        folded = name.lower() if isinstance(name, str) else name
        if folded in _FUNCTION_KEYS:
            continue
        # Other string values are the plugin's configuration; anything else is a mistake.
        if not isinstance(value, str) or suggest(name, _FUNCTION_KEYS, cutoff=0.8) is not None:
            raise unknown_key(at.key(entry, name), name, _FUNCTION_KEYS)
    plugin_name = fn.text("from_wasm_plugin")
    holder = fn
    if plugin_name:
        plugin = (plugins or {}).get(plugin_name)
        if plugin is None:
            raise at.error(f"from_wasm_plugin {plugin_name!r} names no plugin of wasm_global_plugins")
        holder = plugin
    vm = holder.mapping("vm_config")
    if vm is None:
        raise holder.at.error('a WASM function needs a "vm_config"')
    vm.check_keys(_VM_CONFIG_KEYS)
    engine = (vm.text("engine") or "wasmtime").lower()
    if engine not in _WASM_ENGINES:
        raise vm.where("engine").error(f"engine {engine!r} is not one of {list(_WASM_ENGINES)}")
    path = vm.text("path")
    url = vm.text("url")
    if not path:
        hint = " (a vm_config url is not fetched)" if url else ""
        raise vm.at.error(f'vm_config needs the "path" of a .wasm file{hint}')
    instance_num = holder.integer("instance_num", low=_INT32[0], high=_MAX_INSTANCES)
    root_context_id = fn.integer("root_context_id", 1, low=_INT32[0], high=_INT32[1])
    limits = fn.mapping("limits") or Obj({}, fn.where("limits"), "limits")
    limits.check_keys(_LIMITS_KEYS)
    timeout_ms = limits.number("timeout_ms", high=_MAX_TIMEOUT_MS, what="milliseconds")
    memory_mb = limits.number("memory_mb", high=_MAX_MEMORY_MB, what="MiB")
    return WasmFunctionSpec(
        name=fn.text("name") or key,
        path=path,
        engine=engine,
        instance_num=instance_num if instance_num > 0 else os.cpu_count() or 1,
        root_context_id=root_context_id,
        plugin_config={k: v for k, v in entry.items() if isinstance(v, str) and k != "from_wasm_plugin"},
        vm_config={
            "Engine": engine,
            "Path": path,
            "Url": url,
            "Md5": vm.text("md5"),
            "Cpu": str(vm.integer("cpu", low=0, high=_INT32[1])),
            "Mem": str(vm.integer("mem", low=0, high=_INT32[1])),
        },
        timeout=DEFAULT_WASM_TIMEOUT if timeout_ms is None else timeout_ms / 1000,
        memory_limit=DEFAULT_WASM_MEMORY if memory_mb is None else int(memory_mb * 1024 * 1024),
        source=str(at),
    )
