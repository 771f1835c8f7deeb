"""The dependency floors of the three distributions hold, and their wheels are whole.

scripts/check-floors builds the wheels of layotto, layotto-proto and layotto-sdk, checks their
package data, installs them into a fresh venv with every dependency at its declared minimum,
imports every module, runs `layotto --help` and calls a started `layotto start` through both
gRPC APIs (see its docstring). It installs from the package index, so it takes a while (about
20 s with a warm pip cache, a minute or two without).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.services import missing

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-floors"
#: Under the 3 minutes the test may take, with the script's own output to show on failure.
TIMEOUT = 170.0
#: scripts/check-floors' exit status when this machine lacks what it needs (venv, the index).
LACKING = 3

pytestmark = pytest.mark.slow


def test_the_declared_floors_install_import_and_serve() -> None:
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/check-floors took over {TIMEOUT:.0f} s:\n{exc.stdout or ''}{exc.stderr or ''}")
    output = done.stdout + done.stderr
    if done.returncode == LACKING:
        missing(f"scripts/check-floors cannot run here:\n{output}")
    assert done.returncode == 0, f"scripts/check-floors failed:\n{output}"
    assert "floors hold" in done.stdout
    print(f"{output}\n(check-floors: {time.monotonic() - started:.0f} s)")
