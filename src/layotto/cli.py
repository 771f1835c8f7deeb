"""Command line: `layotto start [-c FILE] [--resources-path DIR]`, `layotto version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from layotto import __version__
from layotto.config.model import ComponentSpec, RuntimeConfig
from layotto.errors import ConfigError

DEFAULT_CONFIG = "configs/config.json"


def embedded_default() -> RuntimeConfig:
    """What `layotto start` runs with when there is no config file: no external service."""
    data_dir = Path(os.environ.get("LAYOTTO_DATA_DIR", Path.home() / ".layotto"))
    cfg = RuntimeConfig(source="<embedded default>")
    cfg.components = [
        ComponentSpec("hello", "helloworld", "helloworld", {"hello": "greeting"}),
        ComponentSpec("state", "state_demo", "sqlite", {"databasePath": str(data_dir / "state.db")}),
    ]
    return cfg


def load_config(path: str | None, resources_path: str | None = None) -> RuntimeConfig:
    from layotto.config import layotto_json

    chosen = path or os.environ.get("RUNTIME_CONFIG")
    if chosen:
        cfg = layotto_json.load_file(chosen)
    elif Path(DEFAULT_CONFIG).is_file():
        cfg = layotto_json.load_file(DEFAULT_CONFIG)
    else:
        cfg = embedded_default()
    if resources_path:
        from layotto.config import dapr_yaml

        dapr_yaml.load_into(cfg, resources_path)
    token = os.environ.get("DAPR_API_TOKEN")
    if token:
        cfg.api_token = token
    return cfg


def _run(cfg: RuntimeConfig) -> None:
    from layotto.runtime.server import serve

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
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(__version__)
        return 0
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.resources_path)
        _run(cfg)
    except ConfigError as exc:
        print(f"layotto: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
