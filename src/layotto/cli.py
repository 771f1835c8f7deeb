"""Command line: `layotto start|run|validate|components|version` (docs/cli.md).

`start` runs the sidecar; `run` runs it with an app beside it, as `dapr run`; `validate` loads a
config as `start` would and connects to nothing; `components` lists the component types.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from layotto import __version__
from layotto.config.model import BLOCKS, DEFAULT_DAPR_HTTP_ADDRESS, AppHealthCheck, ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError

if TYPE_CHECKING:
    from layotto.observability.logging import Levels
    from layotto.runtime.registry import ComponentRegistry

DEFAULT_CONFIG = "configs/config.json"


def embedded_default() -> RuntimeConfig:
    """What `layotto start` runs with when there is no config file: no external service."""
    data_dir = Path(os.environ.get("LAYOTTO_DATA_DIR", Path.home() / ".layotto"))
    cfg = RuntimeConfig(source="<embedded default>")
    cfg.app.app_id = "app1"
    # The same components as configs/config.json: SQLite where data must outlive a restart
    # (state, locks, sequences), in-process where a single sidecar is the whole world.
    cfg.components = [
        ComponentSpec("hello", "helloworld", "helloworld", {"hello": "greeting"}),
        ComponentSpec("state", "state_demo", "sqlite", {"databasePath": str(data_dir / "state.db")}),
        ComponentSpec("lock", "lock_demo", "sqlite", {"databasePath": str(data_dir / "lock.db")}),
        ComponentSpec("sequencer", "sequencer_demo", "sqlite", {"databasePath": str(data_dir / "sequencer.db")}),
        ComponentSpec("pubsub", "pub_subs_demo", "in-memory", {}),
        ComponentSpec("configuration", "config_demo", "in-memory", {}),
        ComponentSpec("secretstores", "secret_demo", "local.env", {"prefix": "LAYOTTO_SECRET_"}),
        ComponentSpec("file", "file_demo", "local", {"rootPath": str(data_dir / "files")}),
    ]
    return cfg


@dataclass
class DaprFlags:
    """daprd-style flags, for running a Dapr app's sidecar from its component manifests."""

    app_id: str | None = None
    app_port: int | None = None
    #: "grpc": the app serves Dapr's AppCallback on app_port; "http": app_port is its HTTP port.
    app_protocol: str = "grpc"
    grpc_port: int | None = None
    #: Where Dapr's HTTP API listens (127.0.0.1; daprd's 3500 when the sidecar runs a Dapr app).
    http_port: int | None = None
    #: daprd's app health checks (`--enable-app-health-check` and the `--app-health-*` flags).
    health_check: AppHealthCheck | None = None
    #: daprd's `--dapr-listen-addresses`: where the gRPC and Dapr HTTP APIs listen (127.0.0.1
    #: when empty), whether their ports come from flags or from the config file.
    listen_addresses: tuple[str, ...] = field(default=())
    #: `--dapr-grpc-listen-addresses`, `--dapr-http-listen-addresses`: the same for one of them.
    grpc_listen_addresses: tuple[str, ...] = field(default=())
    http_listen_addresses: tuple[str, ...] = field(default=())
    #: `--actuator-address host:port`: the actuator's listener (health, info, /metrics).
    actuator_address: str | None = None
    #: daprd's `--metrics-port`: the actuator's port (it serves /metrics), on the actuator's host.
    metrics_port: int | None = None

    def given(self) -> bool:
        """Whether any daprd flag that makes this a Dapr app's sidecar was given (--app-protocol
        has a default; the listener flags say where, not what, so none of them counts)."""
        return any(v is not None for v in (self.app_id, self.app_port, self.grpc_port, self.http_port))

    def grpc_hosts(self) -> tuple[str, ...]:
        """The hosts the flags give the gRPC APIs (none: the config file's, or 127.0.0.1)."""
        return self.grpc_listen_addresses or self.listen_addresses

    def http_hosts(self) -> tuple[str, ...]:
        return self.http_listen_addresses or self.listen_addresses


def load_config(path: str | None, resources_path: str | None = None, dapr: DaprFlags | None = None) -> RuntimeConfig:
    from layotto.config import layotto_json

    dapr = dapr or DaprFlags()
    chosen = path or os.environ.get("RUNTIME_CONFIG")
    if chosen:
        cfg = layotto_json.load_file(chosen)
    elif resources_path:
        # Component manifests alone: only what they declare, on the upstream default address.
        cfg = RuntimeConfig(source=resources_path)
    elif Path(DEFAULT_CONFIG).is_file():
        cfg = layotto_json.load_file(DEFAULT_CONFIG)
    else:
        cfg = embedded_default()
    _apply_dapr_flags(cfg, dapr)
    if resources_path:
        from layotto.config import dapr_yaml

        dapr_yaml.load_into(cfg, resources_path)
        cfg.resources_path = resources_path
    if cfg.dapr_http_address is None and (resources_path or dapr.given()):
        # A Dapr app's sidecar: its SDK expects Dapr's HTTP API where daprd has it.
        cfg.dapr_http_address = DEFAULT_DAPR_HTTP_ADDRESS
    _apply_listener_flags(cfg, dapr)
    token = os.environ.get("DAPR_API_TOKEN")
    if token:
        cfg.api_token = token
    return cfg


def _apply_dapr_flags(cfg: RuntimeConfig, dapr: DaprFlags) -> None:
    if dapr.app_id is not None:
        cfg.app.app_id = dapr.app_id
    if dapr.app_port is not None:
        if dapr.app_protocol == "grpc":
            cfg.app.grpc_callback_port = dapr.app_port
            cfg.app.callback_api = "dapr"
        else:
            cfg.app.http_port = dapr.app_port
    if dapr.grpc_port is not None:
        cfg.grpc_network = "tcp"
        cfg.grpc_address, cfg.grpc_extra_addresses = on_hosts(dapr.grpc_hosts(), dapr.grpc_port)
    if dapr.http_port is not None:
        cfg.dapr_http_address, cfg.dapr_http_extra_addresses = on_hosts(dapr.http_hosts(), dapr.http_port)
    if dapr.health_check is not None:
        cfg.app.health_check = dapr.health_check


def _apply_listener_flags(cfg: RuntimeConfig, dapr: DaprFlags) -> None:
    """--dapr-listen-addresses (and the per-API ones) for the API addresses no port flag set
    (the config file's and the defaults: daprd applies it to its API listeners whatever their
    ports), and the actuator's flags."""
    if dapr.grpc_hosts() and dapr.grpc_port is None and cfg.grpc_network == "tcp":
        port = int(cfg.grpc_address.rpartition(":")[2])
        cfg.grpc_address, cfg.grpc_extra_addresses = on_hosts(dapr.grpc_hosts(), port)
    if dapr.http_hosts() and dapr.http_port is None and cfg.dapr_http_address:
        port = int(cfg.dapr_http_address.rpartition(":")[2])
        cfg.dapr_http_address, cfg.dapr_http_extra_addresses = on_hosts(dapr.http_hosts(), port)
    if dapr.actuator_address is not None:
        cfg.actuator_address = dapr.actuator_address
    elif dapr.metrics_port is not None:
        actuator_host = cfg.actuator_address.rpartition(":")[0] if cfg.actuator_address else "127.0.0.1"
        cfg.actuator_address = f"{actuator_host}:{dapr.metrics_port}"


def bind_hosts(addresses: Sequence[str]) -> list[str]:
    """The hosts to bind for daprd's `--dapr-listen-addresses`, each once, in order, without
    IPv6 brackets (127.0.0.1 for none). The listeners bind every one of them."""
    hosts = list(dict.fromkeys(a.strip().strip("[]").lower() for a in addresses if a.strip()))
    return hosts or ["127.0.0.1"]


def on_hosts(addresses: Sequence[str], port: int) -> tuple[str, list[str]]:
    """The first "host:port" of `port` on the hosts of `addresses`, and the others."""
    first, *more = (join_host_port(host, port) for host in bind_hosts(addresses))
    return first, more


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(text: str) -> int:
    port = int(text) if text.strip().isdecimal() and len(text.strip()) <= 5 else 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _listen_addresses(text: str) -> tuple[str, ...]:
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    for address in addresses:
        bare = address.strip("[]")
        if bare.lower() != "localhost":
            try:
                ipaddress.ip_address(bare)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{address!r} is not an IP address") from None
    if not addresses:
        raise argparse.ArgumentTypeError("give one or more IP addresses, separated by commas")
    return addresses


def _host_port(text: str) -> str:
    host, colon, port = text.strip().rpartition(":")
    if not (colon and host and port.isdecimal() and len(port) <= 5 and int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port (port 0 for any free one)")
    bare = host.strip("[]")
    if ":" in bare and not (host.startswith("[") and host.endswith("]")):
        raise argparse.ArgumentTypeError(f"{text!r}: an IPv6 address goes in brackets, [{bare}]:{port}")
    return f"{host}:{int(port)}"


def _positive(text: str) -> int:
    number = int(text) if text.strip().isdecimal() and len(text.strip()) <= 9 else 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return number


#: The level names Python's logging knows, in any case (Dapr's "warn" and "fatal" among them),
#: and upstream's "trace" (DEBUG).
_LOG_LEVELS = (*(name.lower() for name in logging.getLevelNamesMapping()), "trace")


def _log_level(text: str) -> Levels:
    # A type, not `choices`: argparse runs it on the $LAYOTTO_LOG_LEVEL default too.
    from layotto.observability.logging import parse_levels

    try:
        return parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """argparse's, reporting a bad flag on one line (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop is optional: plain asyncio works, only slower
        pass


def _run(cfg: RuntimeConfig) -> None:
    from layotto.sidecar import serve

    _install_uvloop()
    asyncio.run(serve(cfg))


# ---- TLS (docs/operations.md#tls) ----


@dataclass(frozen=True)
class TlsFlags:
    """The TLS flags: the API listeners' certificate, key and client CA; the internal listener's
    port; sidecar to sidecar invocation's CA, certificate, key and server name."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    internal_grpc_port: int | None = None
    peer_ca_file: str | None = None
    peer_cert_file: str | None = None
    peer_key_file: str | None = None
    peer_server_name: str | None = None

    def problem(self) -> str | None:
        """What is wrong with the flags together, as argparse words it; None when nothing is."""
        if (self.cert_file is None) != (self.key_file is None):
            return "give --tls-cert-file and --tls-key-file together"
        if self.client_ca_file is not None and self.cert_file is None:
            return "--tls-client-ca-file needs --tls-cert-file and --tls-key-file: client certificates are TLS's"
        if (self.peer_cert_file is None) != (self.peer_key_file is None):
            return "give --peer-tls-cert-file and --peer-tls-key-file together"
        if self.peer_ca_file is None and (self.peer_cert_file is not None or self.peer_server_name is not None):
            return "the --peer-tls-* flags need --peer-tls-ca-file: the CA other sidecars' certificates chain to"
        if self.internal_grpc_port is not None and self.peer_ca_file is not None and self.peer_cert_file is None:
            return (
                "--dapr-internal-grpc-port with --peer-tls-ca-file needs --peer-tls-cert-file and"
                " --peer-tls-key-file: the internal listener serves this sidecar's certificate"
            )
        return None


def tls_flags(args: argparse.Namespace) -> TlsFlags:
    return TlsFlags(
        cert_file=args.tls_cert_file,
        key_file=args.tls_key_file,
        client_ca_file=args.tls_client_ca_file,
        internal_grpc_port=args.dapr_internal_grpc_port,
        peer_ca_file=args.peer_tls_ca_file,
        peer_cert_file=args.peer_tls_cert_file,
        peer_key_file=args.peer_tls_key_file,
        peer_server_name=args.peer_tls_server_name,
    )


def apply_tls_flags(cfg: RuntimeConfig, flags: TlsFlags) -> None:
    """The flags over the config file's settings (a listener's `tls_context`); the files are
    read when the sidecar starts (or `validate` checks)."""
    from layotto.config.tls import PeerTls, Pem, ServerTls

    def file(path: str | None, what: str, flag: str) -> Pem | None:
        return Pem(path, what, flag) if path else None

    cert = file(flags.cert_file, "certificate", "--tls-cert-file")
    key = file(flags.key_file, "private key", "--tls-key-file")
    if cert is not None and key is not None:
        cfg.tls = ServerTls(cert, key, file(flags.client_ca_file, "client CA certificates", "--tls-client-ca-file"))
    ca = file(flags.peer_ca_file, "peer CA certificates", "--peer-tls-ca-file")
    if ca is not None:
        cfg.peer_tls = PeerTls(
            ca,
            file(flags.peer_cert_file, "peer certificate", "--peer-tls-cert-file"),
            file(flags.peer_key_file, "peer private key", "--peer-tls-key-file"),
            flags.peer_server_name or "",
        )
    if flags.internal_grpc_port is not None:
        # On the gRPC APIs' host: the flags that place them place it too.
        host = cfg.grpc_address.rpartition(":")[0] if cfg.grpc_network == "tcp" else "127.0.0.1"
        cfg.internal_grpc_address = f"{host}:{flags.internal_grpc_port}"


def _tls_options(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group(
        "TLS", "the gRPC APIs' port and Dapr's HTTP API over TLS (over a config file's tls_context)"
    )
    tls.add_argument("--tls-cert-file", metavar="FILE", help="the listeners' certificate (chain), PEM")
    tls.add_argument("--tls-key-file", metavar="FILE", help="its private key, PEM (unencrypted)")
    tls.add_argument(
        "--tls-client-ca-file",
        metavar="FILE",
        help="require client certificates issued by this CA (mTLS); a client without one is refused",
    )
    peers = parser.add_argument_group("Sidecar to sidecar", "service invocation between sidecars")
    peers.add_argument(
        "--dapr-internal-grpc-port",
        type=_port,
        metavar="PORT",
        help="daprd's: a listener only for the calls other sidecars forward (InvokeService to this app),"
        " on the gRPC APIs' host; advertised to name resolution instead of the API port",
    )
    peers.add_argument(
        "--peer-tls-ca-file",
        metavar="FILE",
        help="invoke other sidecars over TLS, verifying their certificate against this CA; the internal"
        " listener requires their client certificates of it",
    )
    peers.add_argument(
        "--peer-tls-cert-file",
        metavar="FILE",
        help="this sidecar's certificate (PEM): presented to the sidecars it invokes, served on the internal listener",
    )
    peers.add_argument("--peer-tls-key-file", metavar="FILE", help="its private key, PEM (unencrypted)")
    peers.add_argument(
        "--peer-tls-server-name",
        metavar="NAME",
        help="the name other sidecars' certificates carry (default: the host dialled, an IP SAN for an IP)",
    )


# ---- validate ----


async def check(cfg: RuntimeConfig) -> dict[str, list[str]]:
    """What `start` checks before and while it starts components, short of connecting: the
    tracing settings, the stream filters, each component's block and type (its class is made,
    not initialised: components read their metadata in `init`, which connects), duplicate
    names, the stores of secret_ref and component_ref entries, the invocation settings. Returns
    the names of the components `start` would start, by block; a problem is the ConfigError
    `start` raises for it."""
    from layotto.api import filters
    from layotto.observability.tracing.tracer import build as build_tracer
    from layotto.runtime.invoke import InvokeSettings
    from layotto.runtime.refs import init_order
    from layotto.runtime.registry import ComponentRegistry
    from layotto.runtime.runtime import Runtime

    tracer = build_tracer(cfg)
    # The pluggable components' types are the sockets' names: asked as `start` asks them.
    registry = ComponentRegistry()
    cfg.warnings.extend(await registry.discover())
    if tracer is not None:
        await tracer.close()
    filters.from_config(cfg.stream_filters)
    # The runtime's checks, in its order, with its messages.
    rt = Runtime(cfg, registry=registry)
    specs = []
    for spec in cfg.components:
        skipped = rt.unavailable(spec)
        if skipped is not None:
            cfg.warnings.append(skipped)
            continue
        specs.append(spec)
    seen: dict[str, list[str]] = {}
    for spec in init_order(specs):
        if spec.name in seen.get(spec.block, []):
            raise ConfigError(f"duplicate {spec.block} component name '{spec.name}'", spec.source)
        rt.create(spec)
        seen.setdefault(spec.block, []).append(spec.name)
    InvokeSettings.from_runtime(rt)
    if cfg.actuator_address:  # the actuator reads the components' `critical` flags as it starts
        from layotto.actuator.http import critical_flags

        critical_flags(cfg)
    for tls in (cfg.tls, cfg.peer_tls):
        if tls is not None:  # read and checked as `start` reads them, before it listens
            cfg.warnings.extend(tls.certificates().material.warnings)
    return seen


def summary(components: dict[str, list[str]]) -> str:
    count = sum(len(names) for names in components.values())
    blocks = "; ".join(f"{block}: {', '.join(names)}" for block, names in components.items())
    return f"OK: {count} component{'' if count == 1 else 's'}" + (f" ({blocks})" if blocks else "")


# ---- components ----


def component_types(blocks: Sequence[str], registry: ComponentRegistry) -> dict[str, list[dict[str, Any]]]:
    """Each block's component types in `registry`: the class registered for it and the
    metadata keys it declares (None where it declares none)."""
    table: dict[str, list[dict[str, Any]]] = {}
    for block in blocks:
        rows = table.setdefault(block, [])
        for type_name in registry.types_of(block):
            cls = type(registry.create(block, type_name))
            keys = cls.metadata_keys
            rows.append(
                {
                    "type": type_name,
                    "class": f"{cls.__module__}:{cls.__qualname__}",
                    "metadata_keys": list(keys) if keys is not None else None,
                }
            )
    return table


def _components_table(table: dict[str, list[dict[str, Any]]]) -> str:
    rows = [(block, row["type"], row["metadata_keys"]) for block, types in table.items() for row in types]
    block_width = max([len("BLOCK"), *(len(r[0]) for r in rows)])
    type_width = max([len("TYPE"), *(len(r[1]) for r in rows)])
    indent = block_width + type_width + 4
    width = max(indent + 30, shutil.get_terminal_size((120, 24)).columns)
    lines = [f"{'BLOCK':<{block_width}}  {'TYPE':<{type_width}}  METADATA KEYS"]
    for block, type_name, keys in rows:
        text = "(not listed)" if keys is None else ", ".join(keys) or "-"
        wrapped = textwrap.wrap(text, width - indent, break_on_hyphens=False) or [text]
        lines.append(f"{block:<{block_width}}  {type_name:<{type_width}}  {wrapped[0]}")
        lines.extend(" " * indent + more for more in wrapped[1:])
    return "\n".join(lines)


# ---- the parser ----


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, with the list of commands unindented by its `{start,run,...}` header."""

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):
            return "".join(self._format_action(sub) for sub in action._get_subactions())
        return super()._format_action(action)


def _sidecar_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that loads a config: start, run, validate."""
    parser.add_argument(
        "-c",
        "--config",
        help=f"Layotto JSON config (default: $RUNTIME_CONFIG or {DEFAULT_CONFIG}, else the embedded default)",
    )
    parser.add_argument(
        "--resources-path", help="a folder of Dapr component YAML files (watched: a changed file is reloaded)"
    )
    parser.add_argument(
        "--watch-config",
        action="store_true",
        help="reload a changed component entry of the -c config file too, as --resources-path files are",
    )
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=os.environ.get("LAYOTTO_LOG_LEVEL", "INFO"),
        metavar="LEVEL[,LOGGER=LEVEL...]",
        help=f"one of {', '.join(_LOG_LEVELS)}, in any case, then a level per logger if need be, as in"
        " info,layotto.pubsub=debug,grpc=info (default: $LAYOTTO_LOG_LEVEL or info; third-party loggers"
        " stay at warning unless named)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("LAYOTTO_LOG_FORMAT", "text"),
        help="text lines, or one JSON object per line: time, level, logger, message, component, trace_id"
        " (default: $LAYOTTO_LOG_FORMAT or text)",
    )
    parser.add_argument(
        "--log-as-json", action="store_const", const="json", dest="log_format", help="daprd's: --log-format json"
    )
    parser.add_argument(
        "--access-log",
        "--enable-api-logging",
        action="store_true",
        default=os.environ.get("LAYOTTO_ACCESS_LOG", "").lower() in ("1", "true", "yes", "on"),
        help="log every gRPC call and Dapr HTTP request (logger layotto.access): method, status, duration, peer"
        " (--enable-api-logging: daprd's; default: $LAYOTTO_ACCESS_LOG)",
    )
    dapr = parser.add_argument_group("Dapr apps", "daprd's flags, to run a Dapr app's sidecar")
    dapr.add_argument("--app-id", help="the app's id (overrides the config's app.app_id)")
    dapr.add_argument("--app-port", type=_port, help="the port the app listens on")
    dapr.add_argument(
        "--app-protocol",
        choices=("grpc", "http"),
        default="grpc",
        help="grpc: the app serves Dapr's AppCallback on --app-port (default); http: --app-port is its HTTP port",
    )
    dapr.add_argument("--dapr-grpc-port", type=_port, help="serve both gRPC APIs on PORT (of --dapr-listen-addresses)")
    dapr.add_argument(
        "--dapr-http-port",
        type=_port,
        help="serve Dapr's HTTP API (/v1.0/...) on PORT (default 3500 with Dapr flags or --resources-path)",
    )
    listeners = parser.add_argument_group("Listeners", "where the sidecar listens (default: the config file's)")
    listeners.add_argument(
        "--dapr-listen-addresses",
        type=_listen_addresses,
        metavar="ADDRESSES",
        help="daprd's: the IP addresses, separated by commas, the gRPC and Dapr HTTP APIs listen on, each on"
        " every one (default 127.0.0.1; 0.0.0.0: every IPv4 address; as in [::1],127.0.0.1)",
    )
    listeners.add_argument(
        "--dapr-grpc-listen-addresses",
        type=_listen_addresses,
        metavar="ADDRESSES",
        help="the same for the gRPC APIs alone (over --dapr-listen-addresses)",
    )
    listeners.add_argument(
        "--dapr-http-listen-addresses",
        type=_listen_addresses,
        metavar="ADDRESSES",
        help="the same for Dapr's HTTP API alone (over --dapr-listen-addresses)",
    )
    listeners.add_argument(
        "--actuator-address",
        type=_host_port,
        metavar="HOST:PORT",
        help="the actuator's listener: health probes, info, /metrics (default 127.0.0.1:34999 or the config's)",
    )
    listeners.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="daprd's: the port of /metrics, which the actuator serves (its host stays)",
    )
    checks = parser.add_argument_group(
        "App health checks", "daprd's: stop sending work to an app that fails its probes"
    )
    checks.add_argument("--enable-app-health-check", action="store_true", help="probe the app")
    checks.add_argument("--app-health-check-path", default="/healthz", help="an HTTP app's probe path (/healthz)")
    checks.add_argument("--app-health-probe-interval", type=_positive, default=5, help="seconds between probes (5)")
    checks.add_argument(
        "--app-health-probe-timeout", type=_positive, default=500, help="milliseconds a probe may take (500)"
    )
    checks.add_argument(
        "--app-health-threshold",
        type=_positive,
        default=3,
        help="failed probes in a row before the app is unhealthy (3)",
    )
    _tls_options(parser)


def _parser() -> tuple[_Parser, dict[str, _Parser]]:
    parser = _Parser(
        prog="layotto",
        description="Application runtime sidecar (Layotto-compatible, with Dapr's APIs)",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"layotto {__version__}", help="print the version")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    commands: dict[str, _Parser] = {}

    def command(name: str, help: str, **kwargs: Any) -> _Parser:
        found: _Parser = sub.add_parser(name, help=help, description=kwargs.pop("description", help), **kwargs)
        commands[name] = found
        return found

    _sidecar_options(command("start", "start the sidecar"))
    run = command(
        "run",
        "start the sidecar, then an app beside it (as `dapr run`)",
        usage="layotto run [options] -- COMMAND [ARG ...]",
        description="Start the sidecar and, once it is ready, COMMAND, with LAYOTTO_ADDRESS, DAPR_GRPC_PORT,"
        " DAPR_HTTP_PORT, APP_PORT and APP_ID set; SIGINT/SIGTERM/SIGHUP go to the app, and when either stops"
        " both stop. The exit code is the app's.",
    )
    _sidecar_options(run)
    validate = command(
        "validate",
        "check a config as `start` would, connecting to no backend",
        description="Load and check the config as `start` does, without connecting to a backend or listening."
        " Prints `OK: <n> components (...)` and exits 0, or prints the error `start` would and exits 2.",
    )
    _sidecar_options(validate)
    # Only problems: the INFO lines are about starting, which validate does not do.
    validate.set_defaults(log_level="WARNING")
    components = command("components", "list each block's component types and their metadata keys")
    components.add_argument("block", nargs="?", help="only this block (state, pubsub, lock, ...)")
    components.add_argument("--json", action="store_true", help="as JSON: {block: [{type, class, metadata_keys}]}")
    command("version", "print the version")
    return parser, commands


def _flags(args: argparse.Namespace) -> DaprFlags:
    return DaprFlags(
        app_id=args.app_id,
        app_port=args.app_port,
        app_protocol=args.app_protocol,
        grpc_port=args.dapr_grpc_port,
        http_port=args.dapr_http_port,
        health_check=AppHealthCheck(
            path=args.app_health_check_path,
            interval=args.app_health_probe_interval,
            timeout=args.app_health_probe_timeout / 1000,
            threshold=args.app_health_threshold,
        )
        if args.enable_app_health_check
        else None,
        listen_addresses=args.dapr_listen_addresses or (),
        grpc_listen_addresses=args.dapr_grpc_listen_addresses or (),
        http_listen_addresses=args.dapr_http_listen_addresses or (),
        actuator_address=args.actuator_address,
        metrics_port=args.metrics_port,
    )


def _components(args: argparse.Namespace, parser: _Parser) -> int:
    from layotto.runtime.registry import ComponentRegistry

    registry = ComponentRegistry()
    for warning in asyncio.run(registry.discover()):
        print(f"layotto: warning: {warning}", file=sys.stderr)
    known = [b for b in BLOCKS if registry.is_known_block(b)]
    if args.block is not None and args.block not in known:
        parser.error(f"unknown block {args.block!r} (blocks: {', '.join(known)})")
    table = component_types([args.block] if args.block else known, registry)
    try:
        print(json.dumps(table, indent=2) if args.json else _components_table(table), flush=True)
    except BrokenPipeError:
        # `layotto components | head`: the reader has what it wanted; no traceback at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _validate(cfg: RuntimeConfig) -> int:
    components = asyncio.run(check(cfg))
    for warning in cfg.warnings:
        print(f"layotto: warning: {warning}", file=sys.stderr)
    print(summary(components))
    return 0


def _launch(cfg: RuntimeConfig, command: list[str], app_port: int | None) -> int:
    from layotto.launcher import run

    # Not on uvloop: it spawns the app with fork(), which runs gRPC's fork handlers in a process
    # full of gRPC threads (and logs that it skips them); asyncio's default loop uses vfork+exec.
    return asyncio.run(run(cfg, command, app_port=app_port))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `run`'s app command is everything after the first `--`, whatever it holds.
    app_command: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, app_command = argv[:cut], argv[cut + 1 :]
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command == "run" and not app_command:
        commands["run"].error("give the app's command after --, as in: layotto run -- python app.py")
    if args.command != "run" and app_command is not None:
        commands[args.command].error("only `layotto run` takes a command after --")
    if args.command == "version":
        print(f"layotto {__version__}")
        return 0
    if args.command == "components":
        return _components(args, commands["components"])
    if args.actuator_address is not None and args.metrics_port is not None:
        commands[args.command].error("give --actuator-address or --metrics-port, not both")
    tls_problem = tls_flags(args).problem()
    if tls_problem:
        commands[args.command].error(tls_problem)
    from layotto.observability.logging import FORMATS
    from layotto.observability.logging import configure as configure_logging

    if args.log_format not in FORMATS:  # $LAYOTTO_LOG_FORMAT: argparse checks no default
        commands[args.command].error(f"invalid log format {args.log_format!r} (choose from {', '.join(FORMATS)})")
    configure_logging(args.log_level, args.log_format, access_log=args.access_log)
    try:
        cfg = load_config(args.config, args.resources_path, _flags(args))
        cfg.access_log = args.access_log
        cfg.watch_config = args.watch_config
        apply_tls_flags(cfg, tls_flags(args))
        if args.command == "validate":
            return _validate(cfg)
        if args.command == "run":
            assert app_command is not None
            return _launch(cfg, app_command, args.app_port)
        _run(cfg)
    except ConfigError as exc:
        print(f"layotto: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
