"""Where the listeners go: daprd's `--dapr-listen-addresses` and `--metrics-port`, and
`--actuator-address`, over the config file's addresses and the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layotto.cli import DaprFlags, bind_host, load_config
from tests.support.sidecar import layotto_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(layotto_config({"app": {"app_id": "a"}}, grpc_port=40001, actuator_port=40002)))
    return path


@pytest.mark.parametrize(
    ("addresses", "host"),
    [
        ((), "127.0.0.1"),
        (("0.0.0.0",), "0.0.0.0"),
        (("[::]",), "::"),
        (("10.1.2.3", " 10.1.2.3 "), "10.1.2.3"),
        # Kubernetes' Dapr default: both loopback addresses, which binding "localhost" gives.
        (("[::1]", "127.0.0.1"), "localhost"),
    ],
)
def test_the_one_host_bound_for_the_listen_addresses(addresses: tuple[str, ...], host: str) -> None:
    assert bind_host(addresses) == host


def test_several_addresses_that_are_not_loopback_ones_are_refused() -> None:
    with pytest.raises(ValueError, match=r"cannot listen on 10\.0\.0\.1, 0\.0\.0\.0 at once"):
        bind_host(("10.0.0.1", "0.0.0.0"))


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
    assert (cfg.grpc_address, cfg.dapr_http_address) == ("localhost:34904", "localhost:3500")


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
