"""Where the listeners go: daprd's `--dapr-listen-addresses` (every address given, on both
APIs), the per-API `--dapr-grpc-listen-addresses` / `--dapr-http-listen-addresses`,
`--metrics-port` and `--actuator-address`, over the config file's addresses and the defaults;
and the logging flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layotto.cli import DaprFlags, _parser, bind_hosts, load_config
from tests.support.sidecar import layotto_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(layotto_config({"app": {"app_id": "a"}}, grpc_port=40001, actuator_port=40002)))
    return path


@pytest.mark.parametrize(
    ("addresses", "hosts"),
    [
        ((), ["127.0.0.1"]),
        (("0.0.0.0",), ["0.0.0.0"]),
        (("[::]",), ["::"]),
        (("10.1.2.3", " 10.1.2.3 "), ["10.1.2.3"]),
        # Kubernetes' Dapr default: both loopback addresses, each bound.
        (("[::1]", "127.0.0.1"), ["::1", "127.0.0.1"]),
        (("10.0.0.1", "0.0.0.0", "[FD00::2]"), ["10.0.0.1", "0.0.0.0", "fd00::2"]),
    ],
)
def test_the_hosts_bound_for_the_listen_addresses(addresses: tuple[str, ...], hosts: list[str]) -> None:
    assert bind_hosts(addresses) == hosts


def test_without_the_flags_the_config_files_addresses_stay(config: Path) -> None:
    cfg = load_config(str(config))
    assert (cfg.grpc_address, cfg.actuator_address, cfg.dapr_http_address) == (
        "127.0.0.1:40001",
        "127.0.0.1:40002",
        None,
    )
    cfg = load_config(str(config), None, DaprFlags(grpc_port=50001, http_port=3501))
    assert (cfg.grpc_address, cfg.dapr_http_address) == ("127.0.0.1:50001", "127.0.0.1:3501")


def test_the_listen_addresses_apply_to_the_port_flags(config: Path) -> None:
    flags = DaprFlags(grpc_port=50001, http_port=3501, listen_addresses=("0.0.0.0",))
    cfg = load_config(str(config), None, flags)
    assert (cfg.grpc_address, cfg.dapr_http_address) == ("0.0.0.0:50001", "0.0.0.0:3501")
    # The actuator is not an API listener: its own flag moves it.
    assert cfg.actuator_address == "127.0.0.1:40002"


def test_the_listen_addresses_apply_to_the_config_files_ports(config: Path) -> None:
    cfg = load_config(str(config), None, DaprFlags(listen_addresses=("::",)))
    assert cfg.grpc_address == "[::]:40001"
    assert cfg.dapr_http_address is None  # they say where, not whether: no Dapr HTTP API appears


def test_the_listen_addresses_apply_to_the_dapr_apps_defaults(tmp_path: Path) -> None:
    flags = DaprFlags(app_id="orders", listen_addresses=("[::1]", "127.0.0.1"))
    cfg = load_config(None, str(tmp_path), flags)
    assert (cfg.grpc_address, cfg.grpc_extra_addresses) == ("[::1]:34904", ["127.0.0.1:34904"])
    assert (cfg.dapr_http_address, cfg.dapr_http_extra_addresses) == ("[::1]:3500", ["127.0.0.1:3500"])


def test_several_listen_addresses_are_all_kept(config: Path) -> None:
    flags = DaprFlags(grpc_port=50001, http_port=3501, listen_addresses=("127.0.0.1", "10.0.0.5", "[fd00::2]"))
    cfg = load_config(str(config), None, flags)
    assert (cfg.grpc_address, cfg.grpc_extra_addresses) == ("127.0.0.1:50001", ["10.0.0.5:50001", "[fd00::2]:50001"])
    assert (cfg.dapr_http_address, cfg.dapr_http_extra_addresses) == (
        "127.0.0.1:3501",
        ["10.0.0.5:3501", "[fd00::2]:3501"],
    )
    # On the config file's port as well.
    cfg = load_config(str(config), None, DaprFlags(listen_addresses=("0.0.0.0", "::")))
    assert (cfg.grpc_address, cfg.grpc_extra_addresses) == ("0.0.0.0:40001", ["[::]:40001"])


def test_each_api_may_have_its_own_listen_addresses(config: Path) -> None:
    flags = DaprFlags(
        grpc_port=50001,
        http_port=3501,
        listen_addresses=("0.0.0.0",),
        grpc_listen_addresses=("127.0.0.1", "[::1]"),
    )
    cfg = load_config(str(config), None, flags)
    assert (cfg.grpc_address, cfg.grpc_extra_addresses) == ("127.0.0.1:50001", ["[::1]:50001"])
    assert (cfg.dapr_http_address, cfg.dapr_http_extra_addresses) == ("0.0.0.0:3501", [])
    cfg = load_config(str(config), None, DaprFlags(http_port=3501, http_listen_addresses=("10.0.0.5",)))
    assert (cfg.grpc_address, cfg.dapr_http_address) == ("127.0.0.1:40001", "10.0.0.5:3501")


@pytest.mark.parametrize(
    ("argv", "grpc_hosts", "http_hosts"),
    [
        (["--dapr-listen-addresses", "[::1],127.0.0.1"], ("[::1]", "127.0.0.1"), ("[::1]", "127.0.0.1")),
        (
            ["--dapr-listen-addresses", "0.0.0.0", "--dapr-http-listen-addresses", "127.0.0.1, 127.0.0.2"],
            ("0.0.0.0",),
            ("127.0.0.1", "127.0.0.2"),
        ),
        (["--dapr-grpc-listen-addresses", "localhost"], ("localhost",), ()),
    ],
)
def test_the_listen_address_flags(argv: list[str], grpc_hosts: tuple[str, ...], http_hosts: tuple[str, ...]) -> None:
    from layotto.cli import _flags

    flags = _flags(_parser()[0].parse_args(["start", *argv]))
    assert (flags.grpc_hosts(), flags.http_hosts()) == (grpc_hosts, http_hosts)


@pytest.mark.parametrize(
    ("argv", "level", "fmt", "access"),
    [
        ([], "info", "text", False),
        (["--log-level", "WARN,layotto.pubsub=debug"], "warning,layotto.pubsub=debug", "text", False),
        (["--log-format", "json"], "info", "json", False),
        (["--log-as-json"], "info", "json", False),  # daprd's
        (["--access-log"], "info", "text", True),
        (["--enable-api-logging"], "info", "text", True),  # daprd's
    ],
)
def test_the_logging_flags(argv: list[str], level: str, fmt: str, access: bool) -> None:
    args = _parser()[0].parse_args(["start", *argv])
    assert (str(args.log_level), args.log_format, args.access_log) == (level, fmt, access)


def test_validate_logs_warnings_only_by_default() -> None:
    assert str(_parser()[0].parse_args(["validate"]).log_level) == "warning"


def test_the_actuator_address_and_the_metrics_port(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(str(config), None, DaprFlags(actuator_address="0.0.0.0:9000"))
    assert cfg.actuator_address == "0.0.0.0:9000"
    cfg = load_config(str(config), None, DaprFlags(metrics_port=9090))
    assert cfg.actuator_address == "127.0.0.1:9090"
    # A config without an actuator gets one where the flag says.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(layotto_config({}, grpc_port=40001)))
    assert load_config(str(bare)).actuator_address is None
    assert load_config(str(bare), None, DaprFlags(metrics_port=9090)).actuator_address == "127.0.0.1:9090"
    # The embedded default's actuator too.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNTIME_CONFIG", raising=False)
    assert load_config(None, None, DaprFlags(actuator_address="[::1]:0")).actuator_address == "[::1]:0"
