"""Discovery of pluggable components at start: every socket of the socket folders is asked what
it serves; one that does not answer (a stale socket), a file that is no socket, a socket that
serves no component service are warnings naming them, and the sidecar starts with the others.
The `validate` and `components` commands see the same types as `start`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection

from layotto.components.pluggable import discovery
from layotto.components.pluggable.state import PluggableStateStore
from layotto.errors import ConfigError
from layotto.runtime.registry import ComponentRegistry
from tests.api.clients import LAYOTTO, Item, client
from tests.contract.pluggable_process import ROOT, socket_folder
from tests.contract.state import pluggable_store
from tests.support.sidecar import running_sidecar


def _dead_socket(path: Path) -> None:
    """A socket file no process listens on: what a component killed without cleanup leaves."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


@pytest.fixture
async def folder() -> AsyncIterator[Path]:
    """A socket folder with a live state store (`live`), a dead socket (`gone`) and a file."""
    path = socket_folder()
    server = await pluggable_store.start(str(path / "live.sock"))
    _dead_socket(path / "gone.sock")
    (path / "notes.txt").write_text("not a socket")
    try:
        yield path
    finally:
        await server.stop(None)


async def test_a_dead_socket_is_a_warning_and_the_sidecar_starts(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ComponentRegistry(socket_folders=[str(folder)])
    with caplog.at_level(logging.WARNING):
        async with running_sidecar({"state": {"s": {"type": "live"}}}, registry) as (_, address):
            async with grpc.aio.insecure_channel(address) as channel:
                api = client(LAYOTTO, channel)
                await api.save_state("s", Item("k", b"v"))
                assert await api.get_state("s", "k") == (b"v", "1")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    gone = [m for m in logged if str(folder / "gone.sock") in m]
    assert len(gone) == 1, logged
    assert gone[0].startswith(f"pluggable component socket {folder / 'gone.sock'} is left out: nothing answers on it")
    assert f"pluggable components: {folder / 'notes.txt'} is not a Unix socket; skipped" in logged


async def test_the_type_of_a_dead_socket_is_an_unknown_type(folder: Path) -> None:
    registry = ComponentRegistry(socket_folders=[str(folder)])
    with pytest.raises(ConfigError) as refused:
        async with running_sidecar({"state": {"s": {"type": "gone"}}}, registry):
            pass
    assert "unknown state component type 'gone' (known: " in str(refused.value)
    assert ", live, " in str(refused.value)


async def test_what_a_socket_serves_makes_its_types(tmp_path: Path) -> None:
    folder = socket_folder()
    # A state store named after a built-in type takes its place (daprd's order), with a warning.
    store = await pluggable_store.start(str(folder / "redis.sock"))
    other = grpc.aio.server()
    reflection.enable_server_reflection(["some.other.Service", reflection.SERVICE_NAME], other)
    other.add_insecure_port(f"unix:{folder / 'other.sock'}")
    await other.start()
    try:
        registry = ComponentRegistry(socket_folders=[str(folder)])
        warnings = await registry.discover()
        assert warnings == [
            f"pluggable component socket {folder / 'other.sock'} serves no component service"
            " (some.other.Service); skipped",
            f"pluggable component socket {folder / 'redis.sock'} takes the place of the built-in"
            " state component type 'redis'",
        ]
        assert isinstance(registry.create("state", "redis"), PluggableStateStore)
        # A state store is a type of the state block only: pub/sub's redis is still the built-in one.
        assert type(registry.create("pubsub", "redis")).__module__ == "layotto.components.pubsub.redis"
        assert "other" not in registry.types_of("state")
    finally:
        await store.stop(None)
        await other.stop(None)


async def test_a_socket_that_does_not_answer_in_time() -> None:
    folder = socket_folder()
    with socket.socket(socket.AF_UNIX) as hung:  # takes connections, never speaks
        hung.bind(str(folder / "hung.sock"))
        hung.listen()
        found = await discovery.discover([str(folder)], within=0.3)
    assert found.types == []
    assert found.warnings == [
        f"pluggable component socket {folder / 'hung.sock'} is left out: it did not answer within 0.3s"
    ]


def test_the_socket_folders_are_daprs_and_layottos() -> None:
    assert discovery.default_folders({}) == ("/tmp/dapr-components-sockets", "/tmp/runtime/component-sockets")
    env = {"DAPR_COMPONENTS_SOCKETS_FOLDER": "/a", "LAYOTTO_COMPONENTS_SOCKETS_FOLDER": "/b"}
    assert discovery.default_folders(env) == ("/a", "/b")
    assert discovery.default_folders(
        {"DAPR_COMPONENTS_SOCKETS_FOLDER": "/a", "LAYOTTO_COMPONENTS_SOCKETS_FOLDER": "/a"}
    ) == ("/a",)


async def _cli(*argv: str, folder: Path) -> tuple[int, str, str]:
    """`layotto ARGV` in a process, with the socket folder; the test's loop serves the socket
    meanwhile."""
    env = {
        **os.environ,
        "DAPR_COMPONENTS_SOCKETS_FOLDER": str(folder),
        "LAYOTTO_COMPONENTS_SOCKETS_FOLDER": str(folder),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "layotto.cli",
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_validate_and_components_see_the_pluggable_types(folder: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    grpc_config = {"state": {"orders": {"type": "live"}}}
    config.write_text(
        json.dumps(
            {
                "servers": [
                    {
                        "listeners": [
                            {
                                "name": "grpc",
                                "address": "127.0.0.1:34904",
                                "filter_chains": [
                                    {
                                        "filters": [
                                            {
                                                "type": "grpc",
                                                "config": {"server_name": "runtime", "grpc_config": grpc_config},
                                            }
                                        ]
                                    }
                                ],
                            }
                        ]
                    }
                ]
            }
        )
    )
    code, out, err = await _cli("validate", "-c", str(config), folder=folder)
    assert (code, out) == (0, "OK: 1 component (state: orders)\n"), err
    assert f"layotto: warning: pluggable component socket {folder / 'gone.sock'} is left out" in err

    code, out, err = await _cli("components", "state", "--json", folder=folder)
    assert code == 0, err
    rows = {row["type"]: row for row in json.loads(out)["state"]}
    assert rows["live"] == {
        "type": "live",
        "class": "layotto.components.pluggable.state:PluggableStateStore",
        "metadata_keys": None,
    }
    assert "gone" not in rows
