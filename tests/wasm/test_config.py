"""Upstream's config shape, and the mistakes that fail the sidecar's start naming what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from layotto.config import layotto_json
from layotto.errors import ConfigError
from layotto.sidecar import Sidecar
from tests.support.sidecar import free_port
from tests.wasm import guests
from tests.wasm.support import config, function

SOURCE = "config.json"


def _load(functions: dict[str, Any], **kwargs: Any) -> Any:
    doc = config(functions, grpc_port=free_port(), wasm_port=free_port(), **kwargs)
    return layotto_json.load_document(doc, source=SOURCE)


def test_upstream_shape_is_read_into_the_model(tmp_path: Path) -> None:
    entry = {
        "name": "function1",
        "instance_num": 0,
        "root_context_id": 3,
        "vm_config": {"engine": "wasmer", "path": "demo/f.wasm", "cpu": 2},
        "limits": {"timeout_ms": 250, "memory_mb": 16},
    }
    doc = config(
        {"function1": entry, "function2": {"from_wasm_plugin": "shared"}},
        grpc_port=free_port(),
        wasm_port=free_port(),
        admin_port=34998,
    )
    # MOSN's global plugins, which an entry may name instead of giving its own vm_config.
    doc["wasm_global_plugins"] = [{"plugin_name": "shared", "instance_num": 2, "vm_config": {"path": "p.wasm"}}]
    cfg = layotto_json.load_document(doc, source=SOURCE)
    spec, plugin = cfg.wasm.functions
    assert (plugin.path, plugin.instance_num, plugin.plugin_config) == ("p.wasm", 2, {})
    assert cfg.wasm.admin_address == "127.0.0.1:34998" and len(cfg.wasm.addresses) == 1
    assert spec.instance_num == (os.cpu_count() or 1)  # upstream: the CPU count when not positive
    assert (spec.root_context_id, spec.timeout, spec.memory_limit) == (3, 0.25, 16 * 1024 * 1024)
    assert spec.plugin_config == {"name": "function1"}
    assert spec.vm_config == {"Engine": "wasmer", "Path": "demo/f.wasm", "Url": "", "Md5": "", "Cpu": "2", "Mem": "0"}
    assert any("engine 'wasmer' is run by wasmtime" in w for w in cfg.warnings)
    assert spec.source.endswith(".stream_filters[0].config.function1")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "f"}, 'a WASM function needs a "vm_config"'),
        ({"vm_config": {"engine": "v8", "path": "x.wasm"}}, "engine 'v8' is not one of"),
        ({"vm_config": {"url": "http://x/f.wasm"}}, "a vm_config url is not fetched"),
        ({"vm_config": {"path": "x.wasm"}, "instance_num": "2"}, "instance_num must be an integer"),
        ({"vm_config": {"path": "x.wasm"}, "limits": {"timeout_ms": 0}}, "timeout_ms must be a positive number"),
        ({"from_wasm_plugin": "nope"}, "from_wasm_plugin 'nope' names no plugin"),
    ],
)
def test_malformed_entries_are_config_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load({"f": entry})
    assert message in str(info.value) and "stream_filters[0].config.f" in str(info.value)


def _broken(tmp_path: Path) -> list[tuple[dict[str, Any], str]]:
    text = tmp_path / "text.wasm"
    text.write_text("(module)")
    good = guests.write(tmp_path, "version", id="fn_dup", text="x")
    return [
        ({"f": function(tmp_path / "missing.wasm")}, "cannot read"),
        ({"f": function(text)}, "is not a WebAssembly module"),
        ({"f": function(guests.write(tmp_path, "noid"))}, "does not export proxy_get_id"),
        ({"f": function(good), "g": function(good)}, "is function 'fn_dup', as"),
        ({"f": function(good, memory_mb=0.05)}, "cannot be instantiated"),
    ]


async def test_load_problems_fail_the_start_with_file_path_and_problem(tmp_path: Path) -> None:
    for functions, message in _broken(tmp_path):
        sidecar = Sidecar(_load(functions))
        with pytest.raises(ConfigError) as info:
            await sidecar.start()
        text = str(info.value)
        assert message in text, text
        assert text.startswith(f"{SOURCE}: $.servers[0].listeners[1].stream_filters[0].config."), text
        assert ".wasm" in text, text


def test_layotto_start_serves_upstream_demo_config(tmp_path: Path) -> None:
    """`layotto start -c` with demo/faas/config.json's shape (its functions rebuilt here)."""
    grpc_port, wasm_port = free_port(), free_port()
    doc = config(
        {
            "function1": function(guests.write(tmp_path, "client", id="id_1")),
            "function2": function(guests.write(tmp_path, "server", id="id_2")),
        },
        grpc_port=grpc_port,
        wasm_port=wasm_port,
        admin_port=free_port(),
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    log = (tmp_path / "sidecar.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "layotto.cli", "start", "-c", str(path)], stdout=log, stderr=log)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{wasm_port}/?name=book1", headers={"id": "id_1"})
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.read() == b"There are  inventories for book1."
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "sidecar.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "sidecar.log").read_text()
                time.sleep(0.1)  # the process is starting: nothing to await across processes
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_example_config_reads() -> None:
    cfg = layotto_json.load_file(Path(__file__).parents[2] / "configs" / "config_wasm.json")
    assert cfg.wasm.addresses == ["127.0.0.1:2045"] and cfg.wasm.admin_address == "127.0.0.1:34998"
    assert [f.name for f in cfg.wasm.functions] == ["function1", "function2"]
    assert cfg.wasm.functions[1].timeout == 1.0
