"""`layotto run`: the sidecar, then the app beside it, as `dapr run` runs daprd and an app.

The sidecar runs in this process's event loop and the app in a child process, so there is one
process to signal and one exit code to read. The app gets its own session (and process group):
a Ctrl-C in a terminal reaches it once, forwarded from here, rather than twice, and a signal
to stop reaches whatever processes the app started (`sh -c`, `npm start`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from layotto.config.model import RuntimeConfig
from layotto.sidecar import Sidecar
from layotto.tasks import stop_task

log = logging.getLogger("layotto.run")

#: Signals this process passes on to the app, which decides how to stop; the sidecar stops
#: after it, so an app shutting down can still use it.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds the app has to exit once asked before its process group is killed.
APP_STOP_GRACE = 10.0
#: Exit codes of a shell for a command it cannot find or cannot execute.
NOT_FOUND, NOT_EXECUTABLE = 127, 126


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a listener bound to `host`: a wildcard address
    cannot be dialled everywhere, loopback can."""
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    try:
        return f"[{bare}]" if ipaddress.ip_address(bare).version == 6 else bare
    except ValueError:
        return bare


def app_environment(
    config: RuntimeConfig, grpc_port: int, http_port: int | None, app_port: int | None
) -> dict[str, str]:
    """The variables the app's SDK finds the sidecar by (Layotto's and Dapr's), beside the
    app's own environment."""
    env: dict[str, str] = {}
    if config.grpc_network == "unix":
        env["LAYOTTO_ADDRESS"] = f"unix:{config.grpc_address}"
        env["runtime_GRPC_HOST"] = f"unix://{config.grpc_address}"
    else:
        host = _client_host(config.grpc_address.rpartition(":")[0])
        env["LAYOTTO_ADDRESS"] = f"{host}:{grpc_port}"
        # Layotto's Node SDK reads these two.
        env["runtime_GRPC_HOST"] = host.strip("[]")
        env["runtime_GRPC_PORT"] = str(grpc_port)
        env["DAPR_GRPC_PORT"] = str(grpc_port)
    if http_port is not None:
        env["DAPR_HTTP_PORT"] = str(http_port)
    if app_port is not None:
        env["APP_PORT"] = str(app_port)
    if config.app.app_id:
        env["APP_ID"] = config.app.app_id
    return env


def _signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    # The app leads its own process group (start_new_session), so its pid is the group's id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _describe(env: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(env.items()))


def exit_code(returncode: int) -> int:
    """A shell's exit code for a child's return code: 128 + N for one killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


async def run(config: RuntimeConfig, command: Sequence[str], *, app_port: int | None = None) -> int:
    """Start the sidecar, then `command` once the sidecar is ready; stop both when either
    stops. Returns the app's exit code (128 + N for a signal N that came before the app did)."""
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[int] = asyncio.Queue()
    for sig in FORWARDED:
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    sidecar = Sidecar(config)
    try:
        started = asyncio.ensure_future(sidecar.start())
        first_signal = asyncio.ensure_future(signals.get())
        await asyncio.wait({started, first_signal}, return_when=asyncio.FIRST_COMPLETED)
        if first_signal.done():
            # Stopped while starting (a backend that does not answer, say): no app to start.
            if started.done():
                started.result()
                await sidecar.stop()
            else:
                await stop_task(started)
            return 128 + first_signal.result()
        first_signal.cancel()
        started.result()  # a ConfigError is the caller's to report, as `start` reports it
        return await _supervise(sidecar, command, app_port, signals)
    finally:
        for sig in FORWARDED:
            loop.remove_signal_handler(sig)


async def _supervise(
    sidecar: Sidecar, command: Sequence[str], app_port: int | None, signals: asyncio.Queue[int]
) -> int:
    cfg = sidecar.config
    http_port = getattr(sidecar.dapr_http, "port", None) if sidecar.dapr_http is not None else None
    sidecar_env = app_environment(cfg, sidecar.port, http_port, app_port)
    log.info("sidecar ready; starting the app with %s: %s", _describe(sidecar_env), " ".join(command))
    env = {**os.environ, **sidecar_env}
    try:
        app = await asyncio.create_subprocess_exec(*command, env=env, start_new_session=True)
    except OSError as exc:
        print(f"layotto run: cannot start the app: {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        await sidecar.stop()
        return NOT_FOUND if isinstance(exc, FileNotFoundError) else NOT_EXECUTABLE
    app_exited = asyncio.ensure_future(app.wait())
    sidecar_stopped: asyncio.Future[None] | None = asyncio.ensure_future(sidecar.wait())
    kill_at: float | None = None
    try:
        while not app_exited.done():
            next_signal = asyncio.ensure_future(signals.get())
            waiting: set[asyncio.Future[Any]] = {app_exited, next_signal}
            if sidecar_stopped is not None:
                waiting.add(sidecar_stopped)
            timeout = None if kill_at is None else max(0.0, kill_at - _now())
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if next_signal in done:
                sig = next_signal.result()
                log.info("passing %s on to the app", signal.Signals(sig).name)
                _signal_group(app, sig)
                kill_at = kill_at or _now() + APP_STOP_GRACE
            else:
                next_signal.cancel()
            if sidecar_stopped is not None and sidecar_stopped in done:
                # Stopped from within (Dapr's Shutdown API): the app goes as well.
                sidecar_stopped = None
                if not app_exited.done():
                    log.info("the sidecar stopped; stopping the app")
                    _signal_group(app, signal.SIGTERM)
                    kill_at = kill_at or _now() + APP_STOP_GRACE
            if not done and kill_at is not None:
                log.warning("the app did not exit within %.0f s; killing it", APP_STOP_GRACE)
                _signal_group(app, signal.SIGKILL)
                kill_at = None
    finally:
        if sidecar_stopped is not None:
            sidecar_stopped.cancel()
        if not app_exited.done():  # cancelled: the app must not outlive the sidecar
            _signal_group(app, signal.SIGKILL)
            await app.wait()
    code = exit_code(app_exited.result())
    log.info("the app exited with %d; stopping the sidecar", code)
    # Whatever the app left running in its group goes with it.
    _signal_group(app, signal.SIGTERM)
    await sidecar.stop()
    await sidecar.wait()
    return code
