"""Build Layotto JSON configs and run sidecars, in-process or as real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc

from layotto.config import layotto_json
from layotto.runtime.registry import ComponentRegistry
from layotto.sidecar import Sidecar


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def layotto_config(
    grpc_config: dict[str, Any],
    *,
    grpc_port: int,
    actuator_port: int | None = None,
    stream_filters: list[dict[str, Any]] | None = None,
    tracing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Layotto JSON document (MOSN bootstrap shape) around `grpc_config`."""
    listeners: list[dict[str, Any]] = [
        {
            "name": "grpc",
            "address": f"127.0.0.1:{grpc_port}",
            "bind_port": True,
            "filter_chains": [
                {"filters": [{"type": "grpc", "config": {"server_name": "runtime", "grpc_config": grpc_config}}]}
            ],
            "stream_filters": stream_filters or [],
        }
    ]
    if actuator_port:
        listeners.append(
            {
                "name": "actuator",
                "address": f"127.0.0.1:{actuator_port}",
                "bind_port": True,
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "type": "proxy",
                                "config": {
                                    "downstream_protocol": "Http1",
                                    "upstream_protocol": "Http1",
                                    "router_config_name": "actuator_dont_need_router",
                                },
                            }
                        ]
                    }
                ],
                "stream_filters": [{"type": "actuator_filter"}],
            }
        )
    doc: dict[str, Any] = {
        "servers": [
            {
                "default_log_path": "stdout",
                "routers": [{"router_config_name": "actuator_dont_need_router"}],
                "listeners": listeners,
            }
        ]
    }
    if tracing is not None:
        doc["tracing"] = tracing
    return doc


@contextlib.asynccontextmanager
async def running_sidecar(
    grpc_config: dict[str, Any], registry: ComponentRegistry | None = None, **kwargs: Any
) -> AsyncIterator[tuple[Sidecar, str]]:
    """An in-process sidecar on a free port, making its components with `registry` (None: the
    built-in types); yields (sidecar, "127.0.0.1:port")."""
    port = free_port()
    cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=port, **kwargs), source="<test>")
    sidecar = Sidecar(cfg, registry)
    await sidecar.start()
    try:
        yield sidecar, f"127.0.0.1:{port}"
    finally:
        await sidecar.stop()


def wait_for_sidecar(proc: subprocess.Popen[bytes], address: str, log: Path, timeout: float = 30.0) -> None:
    """Until the sidecar process `proc` takes gRPC connections on `address`; its log (at `log`)
    is in the error when it exits or is not ready within `timeout`."""

    def text() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {proc.returncode}:\n{text()}")
            try:
                grpc.channel_ready_future(channel).result(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                return
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sidecar not ready after {timeout}s:\n{text()}") from None


class SidecarProcess:
    """A sidecar in its own process (`python -m layotto.cli start -c FILE`)."""

    def __init__(
        self,
        grpc_config: dict[str, Any],
        *,
        actuator: bool = True,
        env: dict[str, str] | None = None,
        grpc_port: int | None = None,
    ) -> None:
        self.grpc_port = grpc_port or free_port()
        self.actuator_port = free_port() if actuator else None
        self.grpc_config = grpc_config
        self.address = f"127.0.0.1:{self.grpc_port}"
        self._dir = tempfile.mkdtemp(prefix="layotto-test-")
        self.config_path = Path(self._dir) / "config.json"
        self.config_path.write_text(
            json.dumps(layotto_config(grpc_config, grpc_port=self.grpc_port, actuator_port=self.actuator_port))
        )
        self.log_path = Path(self._dir) / "sidecar.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> SidecarProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "layotto.cli", "start", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        wait_for_sidecar(self.proc, self.address, self.log_path, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()


@contextlib.contextmanager
def sidecars(grpc_config: dict[str, Any], count: int, **kwargs: Any) -> Iterator[list[SidecarProcess]]:
    procs = [SidecarProcess(grpc_config, **kwargs) for _ in range(count)]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            if p.proc is not None:
                p.terminate()
