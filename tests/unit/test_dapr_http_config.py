"""Where Dapr's HTTP API listens: a Layotto JSON config's `"dapr_http"` section, `--dapr-http-port`,
and daprd's 3500 for a sidecar run with Dapr's flags or component manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layotto.cli import DaprFlags, load_config
from layotto.config import layotto_json
from layotto.errors import ConfigError
from tests.support.sidecar import layotto_config


def _doc(**extra: Any) -> dict[str, Any]:
    return {**layotto_config({"app": {"app_id": "a"}}, grpc_port=34904), **extra}


def test_json_config_turns_it_on() -> None:
    assert layotto_json.load_document(_doc()).dapr_http_address is None
    cfg = layotto_json.load_document(_doc(dapr_http={"address": "127.0.0.1:3600"}))
    assert cfg.dapr_http_address == "127.0.0.1:3600"
    assert layotto_json.load_document(_doc(DAPR_HTTP={"Address": "0.0.0.0:3501"})).dapr_http_address == "0.0.0.0:3501"


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("127.0.0.1:3500", r"\$\.dapr_http: dapr_http must be a JSON object"),
        ({}, r"\$\.dapr_http\.address: address must be a \"host:port\" string"),
        ({"address": 3500}, r"address must be a \"host:port\""),
        ({"address": "localhost"}, r"address must be a \"host:port\""),
        ({"address": "localhost:99999"}, r"address must be a \"host:port\""),
    ],
)
def test_a_bad_section_is_a_config_error(section: Any, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        layotto_json.load_document(_doc(dapr_http=section), source="c.json")


def test_dapr_mode_defaults_to_daprds_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    # The embedded default (no config file, no Dapr flag): no Dapr HTTP API.
    assert load_config(None).dapr_http_address is None
    assert load_config(None, None, DaprFlags(app_id="orders")).dapr_http_address == "127.0.0.1:3500"
    assert load_config(None, str(tmp_path)).dapr_http_address == "127.0.0.1:3500"
    flags = DaprFlags(http_port=3999)
    cfg = load_config(None, str(tmp_path), flags)
    # --dapr-http-port moves Dapr's HTTP API, not the actuator.
    assert (cfg.dapr_http_address, cfg.actuator_address) == ("127.0.0.1:3999", "127.0.0.1:34999")


def test_a_json_config_keeps_its_address_in_dapr_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_doc(dapr_http={"address": "127.0.0.1:3700"})))
    assert load_config(str(path), None, DaprFlags(app_id="x")).dapr_http_address == "127.0.0.1:3700"
    assert load_config(str(path), None, DaprFlags(http_port=3800)).dapr_http_address == "127.0.0.1:3800"
