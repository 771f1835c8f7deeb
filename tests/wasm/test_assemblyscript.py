"""The AssemblyScript guest helper (tests/wasm/guests/assemblyscript/assembly/layotto.ts),
compiled with the AssemblyScript compiler from npm, driving every block through the host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.services import missing, require_binary
from tests.wasm.support import function, running

HERE = Path(__file__).parent / "guests" / "assemblyscript"


@pytest.fixture(scope="module")
def as_function(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = require_binary("npm")
    if not (HERE / "node_modules" / ".bin" / "asc").exists():
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=HERE, capture_output=True)
        if done.returncode != 0:
            missing(f"npm install of the AssemblyScript compiler failed: {done.stderr.decode()[-500:]}")
    out = tmp_path_factory.mktemp("as") / "as_fn.wasm"
    command = [str(HERE / "node_modules" / ".bin" / "asc"), "assembly/function.ts", "--outFile", str(out)]
    subprocess.run([*command, "--optimize", "--use", "abort="], cwd=HERE, check=True)
    return out


async def test_the_assemblyscript_helper_reaches_every_block(
    as_function: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WASM_TEST_DB", "s3cret")
    async with running({"as": function(as_function, instances=2)}) as rt:
        status, text = await rt.call("as_fn", b"hello", op="demo")
        assert status == 200, text
        assert text == (
            "got=hello id=1 locked=true again=false unlocked=0 published=true config= secret=s3cret echoed=hi"
        )
        assert await rt.call("as_fn", b"plain") == (200, "plain")
