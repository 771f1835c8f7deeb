"""Pluggable components of the suites as the sidecar meets them: a process of their own serving
a Unix socket in a socket folder (`python -m MODULE SOCKET`).

The contract rows of pluggable components share one folder and one process per component for
the whole run, started when a row first needs it and stopped when the run ends; the tests that
kill and restart a component start their own (`ComponentProcess`).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

from layotto.runtime.registry import ComponentRegistry

ROOT = Path(__file__).resolve().parents[2]
STATE_MODULE = "tests.contract.state.pluggable_store"
PUBSUB_MODULE = "tests.contract.pubsub.pluggable_broker"

#: Reconnect quickly while a socket is not there yet (grpc waits up to seconds by default).
_PROBE_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]


async def parent_gone() -> None:
    """Returns when the process that started this one is gone (its end of our stdin closes):
    a component process of the suites never outlives the test run, however it ends."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


class ComponentProcess:
    """A component process serving `socket`: `argv` (default: `python -m module socket`), its
    output in `log` (beside the folder, not in it: the sidecar would find a file there that is
    not a socket)."""

    def __init__(
        self, module: str, socket: Path, *, argv: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.module = module
        self.socket = socket
        self.argv = argv or [sys.executable, "-m", module, str(socket)]
        self.env = {**os.environ, **(env or {})}
        self.log = socket.parent.parent / f"{socket.parent.name}-logs" / f"{socket.stem}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, within: float = 20.0) -> ComponentProcess:
        self.log.parent.mkdir(exist_ok=True)
        with self.log.open("ab") as out:
            # Popen returns at once (the wait below is the loop's); a sync handle, for atexit's stop.
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                self.argv, cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT
            )
        await self.serving(within)
        return self

    async def serving(self, within: float) -> None:
        """Until the socket takes connections; the process's output is in the error when it
        exits or is not serving within `within` seconds."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with grpc.aio.insecure_channel(f"unix:{self.socket}", options=_PROBE_OPTIONS) as channel:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    await asyncio.wait_for(channel.channel_ready(), 0.5)
                    return
                except TimeoutError:
                    if loop.time() > deadline:
                        raise RuntimeError(f"{self.module} not serving after {within}s:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash: the socket file stays behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def socket_folder(prefix: str = "layotto-pluggable-") -> Path:
    """A new socket folder, short enough for a socket path (108 bytes), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    atexit.register(shutil.rmtree, folder.parent / f"{folder.name}-logs", True)
    atexit.register(shutil.rmtree, folder, True)
    return folder


class _Shared:
    """The run's folder and processes of the contract rows."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.processes: dict[str, ComponentProcess] = {}
        self.lock = asyncio.Lock()

    async def registry(self, module: str, type_name: str) -> ComponentRegistry:
        async with self.lock:
            if self.folder is None:
                self.folder = socket_folder()
            if type_name not in self.processes:
                started = await ComponentProcess(module, self.folder / f"{type_name}.sock").start()
                atexit.register(started.stop)
                self.processes[type_name] = started
        registry = ComponentRegistry(socket_folders=[str(self.folder)])
        warnings = await registry.discover()
        assert not warnings, warnings
        return registry


_SHARED = _Shared()


async def state_registry() -> ComponentRegistry:
    """The registry knowing `test-pluggable-state`, the suites' pluggable state store."""
    return await _SHARED.registry(STATE_MODULE, "test-pluggable-state")


async def pubsub_registry() -> ComponentRegistry:
    """The registry knowing `test-pluggable-pubsub`, the suites' pluggable broker."""
    return await _SHARED.registry(PUBSUB_MODULE, "test-pluggable-pubsub")
