"""The embedded default (`layotto start` without a config) needs no server, so starting its
components must not load the PostgreSQL or MySQL client libraries: each SQL component
imports only its own driver (_drivers/sqlite.py, postgres.py, mysql.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Run in a fresh interpreter: this test process has imported everything already.
_START_EMBEDDED_DEFAULT = """
import asyncio, json, sys

from layotto.cli import embedded_default
from layotto.runtime.runtime import Runtime


async def main() -> list[str]:
    runtime = Runtime(embedded_default())
    await runtime.start()
    try:
        blocks = ("state", "lock", "sequencer")
        return sorted(f"{block}.{name}" for block in blocks for name in runtime.components(block))
    finally:
        await runtime.close()

started = asyncio.run(main())
print(json.dumps({"started": started, "loaded": [m for m in ("asyncpg", "aiomysql", "pymysql") if m in sys.modules]}))
"""


def test_embedded_default_loads_no_postgres_or_mysql_client(tmp_path: Path) -> None:
    env = {**os.environ, "LAYOTTO_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _START_EMBEDDED_DEFAULT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The SQLite components did start: the check is not passing on an empty runtime.
    assert result["started"] == ["lock.lock_demo", "sequencer.sequencer_demo", "state.state_demo"]
    assert result["loaded"] == []
