"""`layotto run -- APP`: real processes. The app starts once the sidecar answers, finds it
through its environment, and its exit code is the run's; a signal to `layotto run` reaches the
app, and whichever stops first, both stop. `--dapr-listen-addresses` binds where it says."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from tests.support.sidecar import free_port, layotto_config, wait_for_sidecar

#: The app of the tests: asks the sidecar's gRPC health and SayHello through the addresses in
#: its environment, prints what it got, then does what argv[1] says.
APP = textwrap.dedent(
    """\
    import json, os, signal, sys, time, urllib.request

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from layotto_sdk import Client

    def stop(sig, frame):
        print(f"app got {signal.Signals(sig).name}", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    names = ("LAYOTTO_ADDRESS", "DAPR_GRPC_PORT", "DAPR_HTTP_PORT", "APP_PORT", "APP_ID")
    print("env", json.dumps({name: os.environ.get(name) for name in names}), flush=True)
    address = os.environ["LAYOTTO_ADDRESS"]
    # No wait_for_ready: the sidecar must be serving before the app starts, not soon after.
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    print("health", health_pb2.HealthCheckResponse.ServingStatus.Name(health.status), flush=True)
    with Client() as client:
        print("hello", client.say_hello("helloworld", "run").hello, flush=True)
    then = sys.argv[1]
    if then == "wait":
        with open(sys.argv[2], "w") as ready:
            ready.write(str(os.getpid()))
        while True:
            time.sleep(3600)
    if then == "shutdown":
        port = os.environ["DAPR_HTTP_PORT"]
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1.0/shutdown", method="POST"))
        while True:
            time.sleep(3600)
    sys.exit(int(then))
    """
)


def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout}s")
        time.sleep(0.05)


class Run:
    """`layotto run` over a config of free ports, with the test app."""

    def __init__(self, tmp_path: Path) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        self.config = tmp_path / "config.json"
        grpc_config = {"app": {"app_id": "cli-test"}, "hellos": {"helloworld": {"type": "helloworld"}}}
        self.config.write_text(
            json.dumps(layotto_config(grpc_config, grpc_port=self.grpc_port, actuator_port=free_port()))
        )
        self.app = tmp_path / "app.py"
        self.app.write_text(APP)
        self.ready = tmp_path / "app.pid"

    def argv(self, *app_args: str, flags: tuple[str, ...] = ()) -> list[str]:
        return [
            sys.executable,
            "-m",
            "layotto.cli",
            "run",
            "-c",
            str(self.config),
            *flags,
            "--",
            sys.executable,
            str(self.app),
            *app_args,
        ]

    def run(self, *app_args: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*app_args, flags=flags), capture_output=True, text=True, timeout=60)

    def popen(self, *app_args: str, flags: tuple[str, ...] = ()) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*app_args, flags=flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def _env(stdout: str) -> dict[str, str | None]:
    line = next(line for line in stdout.splitlines() if line.startswith("env "))
    found: dict[str, str | None] = json.loads(line[4:])
    return found


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_app_starts_once_the_sidecar_serves_and_finds_it(run: Run) -> None:
    flags = ("--app-id", "orders", "--app-port", str(free_port()), "--dapr-http-port", str(run.http_port))
    done = run.run("0", flags=flags)
    assert done.returncode == 0, done.stderr
    assert "health SERVING" in done.stdout
    assert "hello greeting, run" in done.stdout
    env = _env(done.stdout)
    assert env["LAYOTTO_ADDRESS"] == f"127.0.0.1:{run.grpc_port}"
    assert env["DAPR_GRPC_PORT"] == str(run.grpc_port)
    assert env["DAPR_HTTP_PORT"] == str(run.http_port)
    assert env["APP_PORT"] == flags[3]
    assert env["APP_ID"] == "orders"
    assert "layotto stopped" in done.stderr


def test_without_the_dapr_http_api_or_an_app_port_their_variables_are_unset(run: Run) -> None:
    done = run.run("0")
    assert done.returncode == 0, done.stderr
    env = _env(done.stdout)
    assert env["DAPR_HTTP_PORT"] is None and env["APP_PORT"] is None
    assert env["APP_ID"] == "cli-test"


def test_the_apps_exit_code_is_the_runs_and_the_sidecar_stops(run: Run) -> None:
    done = run.run("3")
    assert done.returncode == 3, done.stderr
    assert "hello greeting, run" in done.stdout
    assert "the app exited with 3; stopping the sidecar" in done.stderr
    assert done.stderr.rstrip().endswith("layotto stopped")
    assert _refused(run.grpc_port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_reaches_the_app_and_both_stop(run: Run, sig: signal.Signals) -> None:
    proc = run.popen("wait", str(run.ready))
    try:
        until(lambda: run.ready.exists() and run.ready.read_text(), "the app is ready")
        app_pid = int(run.ready.read_text())
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert f"app got {sig.name}" in stdout
    assert stdout.count("app got") == 1  # passed on once
    assert stderr.rstrip().endswith("layotto stopped")
    until(lambda: _gone(app_pid), "the app gone")
    assert _refused(run.grpc_port)


def test_the_sidecar_stopping_stops_the_app(run: Run) -> None:
    # The app asks Dapr's Shutdown API: the sidecar stops, and the app is told to (SIGTERM).
    done = run.run("shutdown", flags=("--dapr-http-port", str(run.http_port)))
    assert done.returncode == 0, done.stderr
    assert "app got SIGTERM" in done.stdout
    assert "the sidecar stopped; stopping the app" in done.stderr


def test_an_app_that_cannot_be_started(run: Run, tmp_path: Path) -> None:
    argv = run.argv()
    argv[argv.index("--") + 1 :] = [str(tmp_path / "no-such-app")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 127
    assert f"layotto run: cannot start the app: {tmp_path / 'no-such-app'}: No such file or directory" in done.stderr
    assert done.stderr.rstrip().endswith("layotto stopped")


def test_a_bad_config_starts_no_app_and_is_starts_error(run: Run) -> None:
    run.config.write_text(run.config.read_text().replace('"helloworld"}', '"nope"}'))
    done = run.run("0")
    assert done.returncode == 2
    assert done.stdout == ""  # the app never ran
    assert done.stderr.strip().splitlines()[-1].startswith("layotto: invalid configuration: ")
    assert "unknown hello component type 'nope'" in done.stderr


#: What a listener on every address shows: gRPC binds 0.0.0.0 as a dual-stack IPv6 socket.
EVERY_ADDRESS = ({"0.0.0.0"}, {"::"})


def _listening(pid: int) -> dict[int, set[str]]:
    """port -> the addresses process `pid` listens on (an IPv4-mapped IPv6 one as IPv4, as
    gRPC's dual-stack sockets show 127.0.0.1)."""
    found: dict[int, set[str]] = {}
    for conn in psutil.Process(pid).net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN:
            ip = ipaddress.ip_address(conn.laddr.ip)
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            found.setdefault(conn.laddr.port, set()).add(str(mapped or ip))
    return found


def _other_local_ipv4() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


@contextlib.contextmanager
def started(tmp_path: Path, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """`layotto start` with `flags`, ready (its gRPC port answers on 127.0.0.1)."""
    grpc_port = int(flags[flags.index("--dapr-grpc-port") + 1])
    log = tmp_path / f"sidecar-{grpc_port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "layotto.cli", "start", "--resources-path", str(tmp_path), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LAYOTTO_DATA_DIR": str(tmp_path / "data")},
        )
    try:
        wait_for_sidecar(proc, f"127.0.0.1:{grpc_port}", log)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dapr_listen_addresses_binds_every_address(tmp_path: Path) -> None:
    grpc_port, http_port, actuator_port = free_port(), free_port(), free_port()
    flags = ("--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(http_port))
    actuator = ("--actuator-address", f"0.0.0.0:{actuator_port}")
    with started(tmp_path, *flags, "--dapr-listen-addresses", "0.0.0.0", *actuator) as proc:
        until(lambda: len(_listening(proc.pid)) >= 3, "listening on three ports")
        listening = _listening(proc.pid)
        assert listening[grpc_port] in EVERY_ADDRESS
        assert listening[http_port] == listening[actuator_port] == {"0.0.0.0"}
        other = _other_local_ipv4()
        if other is not None:  # reachable on an address that is not loopback
            socket.create_connection((other, grpc_port), timeout=5).close()
            socket.create_connection((other, http_port), timeout=5).close()


def test_by_default_the_flags_bind_loopback_only(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    flags = ("--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(http_port))
    with started(tmp_path, *flags, "--actuator-address", f"127.0.0.1:{free_port()}") as proc:
        until(lambda: http_port in _listening(proc.pid), "listening on the HTTP port")
        listening = _listening(proc.pid)
        assert listening[grpc_port] == listening[http_port] == {"127.0.0.1"}
        other = _other_local_ipv4()
        if other is not None:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((other, grpc_port), timeout=5)


def _local_addresses() -> set[str]:
    return {a.address.split("%")[0] for addresses in psutil.net_if_addrs().values() for a in addresses}


def _grpc_serves(address: str) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_several_listen_addresses_are_each_bound(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    flags = ("--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(http_port))
    actuator = ("--actuator-address", f"127.0.0.1:{free_port()}")
    with started(tmp_path, *flags, "--dapr-listen-addresses", "127.0.0.1,127.0.0.2,[::1]", *actuator) as proc:
        until(lambda: http_port in _listening(proc.pid), "listening on the HTTP port")
        listening = _listening(proc.pid)
        assert listening[grpc_port] == listening[http_port] == {"127.0.0.1", "127.0.0.2", "::1"}
        for host in ("127.0.0.2", "[::1]"):
            assert _grpc_serves(f"{host}:{grpc_port}")
            with urllib.request.urlopen(f"http://{host}:{http_port}/v1.0/healthz", timeout=5) as reply:
                assert reply.status == 204


def test_each_api_binds_its_own_listen_addresses(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    flags = ("--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(http_port))
    per_api = ("--dapr-listen-addresses", "127.0.0.1", "--dapr-http-listen-addresses", "127.0.0.2,[::1]")
    with started(tmp_path, *flags, *per_api, "--actuator-address", f"127.0.0.1:{free_port()}") as proc:
        until(lambda: http_port in _listening(proc.pid), "listening on the HTTP port")
        listening = _listening(proc.pid)
        assert listening[grpc_port] == {"127.0.0.1"}
        assert listening[http_port] == {"127.0.0.2", "::1"}


def test_an_address_that_cannot_be_had_is_a_warning_while_another_is_bound(tmp_path: Path) -> None:
    absent = "198.51.100.7"  # TEST-NET-2: no interface of this machine has it
    assert absent not in _local_addresses()
    grpc_port, http_port = free_port(), free_port()
    flags = ("--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(http_port))
    actuator = ("--actuator-address", f"127.0.0.1:{free_port()}")
    with started(tmp_path, *flags, "--dapr-listen-addresses", f"{absent},127.0.0.1", *actuator) as proc:
        until(lambda: http_port in _listening(proc.pid), "listening on the HTTP port")
        listening = _listening(proc.pid)
        assert listening[grpc_port] == listening[http_port] == {"127.0.0.1"}
    log = (tmp_path / f"sidecar-{grpc_port}.log").read_text()
    assert f"the gRPC APIs cannot listen on {absent}:{grpc_port}" in log
    assert f"Dapr HTTP API cannot listen on {absent}:{http_port}" in log
    # None bound: start's one-line error.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "layotto.cli",
            "start",
            "--resources-path",
            str(tmp_path),
            *flags,
            "--dapr-listen-addresses",
            absent,
            *actuator,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LAYOTTO_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"layotto: invalid configuration: {tmp_path}: cannot listen on {absent}:{grpc_port}: ")
    )
