"""Command line: `layotto start [-c FILE] [--resources-path DIR] [Dapr flags]`, `layotto version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from layotto import __version__
from layotto.config.model import DEFAULT_DAPR_HTTP_ADDRESS, AppHealthCheck, ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError

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
        ComponentSpec("secretstores", "secret_demo", "local.env", {}),
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

    def given(self) -> bool:
        """Whether any daprd flag was given (--app-protocol has a default, so it does not count)."""
        return any(v is not None for v in (self.app_id, self.app_port, self.grpc_port, self.http_port))


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
    if cfg.dapr_http_address is None and (resources_path or dapr.given()):
        # A Dapr app's sidecar: its SDK expects Dapr's HTTP API where daprd has it.
        cfg.dapr_http_address = DEFAULT_DAPR_HTTP_ADDRESS
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
        cfg.grpc_address = f"127.0.0.1:{dapr.grpc_port}"
    if dapr.http_port is not None:
        cfg.dapr_http_address = f"127.0.0.1:{dapr.http_port}"
    if dapr.health_check is not None:
        cfg.app.health_check = dapr.health_check


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a port number")
    return port


def _run(cfg: RuntimeConfig) -> None:
    from layotto.sidecar import serve

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop is optional: plain asyncio works, only slower
        pass
    asyncio.run(serve(cfg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="layotto", description="Application runtime sidecar (Layotto-compatible)")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the runtime")
    start.add_argument(
        "-c",
        "--config",
        help=f"Layotto JSON config (default: $RUNTIME_CONFIG or {DEFAULT_CONFIG}, else the embedded default)",
    )
    start.add_argument("--resources-path", help="a folder of Dapr component YAML files")
    start.add_argument("--log-level", default=os.environ.get("LAYOTTO_LOG_LEVEL", "INFO"))
    dapr = start.add_argument_group("Dapr apps", "daprd's flags, to run a Dapr app's sidecar")
    dapr.add_argument("--app-id", help="the app's id (overrides the config's app.app_id)")
    dapr.add_argument("--app-port", type=_port, help="the port the app listens on")
    dapr.add_argument(
        "--app-protocol",
        choices=("grpc", "http"),
        default="grpc",
        help="grpc: the app serves Dapr's AppCallback on --app-port (default); http: --app-port is its HTTP port",
    )
    dapr.add_argument("--dapr-grpc-port", type=_port, help="serve both APIs on 127.0.0.1:PORT")
    dapr.add_argument(
        "--dapr-http-port",
        type=_port,
        help="serve Dapr's HTTP API (/v1.0/...) on 127.0.0.1:PORT (default 3500 with Dapr flags or --resources-path)",
    )
    checks = start.add_argument_group("App health checks", "daprd's: stop sending work to an app that fails its probes")
    checks.add_argument("--enable-app-health-check", action="store_true", help="probe the app")
    checks.add_argument("--app-health-check-path", default="/healthz", help="an HTTP app's probe path (/healthz)")
    checks.add_argument("--app-health-probe-interval", type=int, default=5, help="seconds between probes (5)")
    checks.add_argument("--app-health-probe-timeout", type=int, default=500, help="milliseconds a probe may take (500)")
    checks.add_argument(
        "--app-health-threshold", type=int, default=3, help="failed probes in a row before the app is unhealthy (3)"
    )
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(__version__)
        return 0
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        flags = DaprFlags(
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
        )
        cfg = load_config(args.config, args.resources_path, flags)
        _run(cfg)
    except ConfigError as exc:
        print(f"layotto: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
