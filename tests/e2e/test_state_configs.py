"""The shipped configs load and every component in them starts and reports UP."""

from __future__ import annotations

from pathlib import Path

import pytest

from layotto.config import layotto_json
from layotto.runtime.runtime import Runtime
from tests.support.services import require

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["config.json", "config_standalone.json", "config_redis.json"])
async def test_shipped_config_starts(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the sqlite store lives under ~/.layotto
    cfg = layotto_json.load_file(CONFIGS / name)
    assert (cfg.grpc_address, cfg.actuator_address) == ("127.0.0.1:34904", "127.0.0.1:34999")
    assert not cfg.warnings
    if any(spec.type == "redis" for spec in cfg.components):
        require("redis")
    runtime = Runtime(cfg)
    await runtime.start()
    try:
        health = await runtime.health()
        assert health and set(health.values()) == {"UP"}, health
        assert ("state", "state_demo") in health
    finally:
        await runtime.close()
