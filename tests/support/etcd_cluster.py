"""A multi-member etcd cluster on loopback for one test module: each member a process of its own
on free client and peer ports, data in a temp dir. `kill(i)` SIGKILLs a member (a crash),
`restart(i)` brings it back on its data; `leader()` asks the members which one leads, over
etcd's JSON gateway (so this needs no etcd client). A missing etcd binary is a failure under
CI=true (tests/support/services.missing).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.services import require_binary
from tests.support.sidecar import free_port

START_TIMEOUT = 30.0


class EtcdCluster:
    def __init__(self, members: int = 3) -> None:
        self.size = members
        self.client_ports = [free_port() for _ in range(members)]
        self.peer_ports = [free_port() for _ in range(members)]
        self.workdir = Path(tempfile.mkdtemp(prefix="layotto-etcd-cluster-"))
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * members
        #: Members stopped on purpose (their exit is no failure).
        self.down: set[int] = set()
        self._token = f"layotto-{uuid.uuid4().hex[:8]}"

    def _argv(self, i: int) -> list[str]:
        binary = require_binary("etcd")
        client, peer = f"http://127.0.0.1:{self.client_ports[i]}", f"http://127.0.0.1:{self.peer_ports[i]}"
        initial = ",".join(f"m{j}=http://127.0.0.1:{p}" for j, p in enumerate(self.peer_ports))
        return [
            binary,
            *("--name", f"m{i}", "--data-dir", str(self.workdir / f"m{i}")),
            *("--listen-client-urls", client, "--advertise-client-urls", client),
            *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
            *("--initial-cluster", initial, "--initial-cluster-token", self._token),
            *("--initial-cluster-state", "new", "--log-level", "warn"),
            # etcd's defaults, spelled out: the recovery times measured depend on them.
            *("--heartbeat-interval", "100", "--election-timeout", "1000"),
        ]

    def _spawn(self, i: int) -> None:
        with (self.workdir / f"m{i}.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(self._argv(i), stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> EtcdCluster:
        try:
            for i in range(self.size):  # all at once: members wait for each other to form
                self._spawn(i)
            self.wait_leader()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.client_ports]

    def alive(self, i: int) -> bool:
        proc = self.procs[i]
        return proc is not None and proc.poll() is None

    def status(self, i: int) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.client_ports[i]}/v3/maintenance/status", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=2) as reply:
            found: dict[str, Any] = json.loads(reply.read())
            return found

    def leader(self) -> int | None:
        """The index of the member every live member names as leader, if they agree on one."""
        ids: dict[str, int] = {}
        named: set[str] = set()
        for i in range(self.size):
            if not self.alive(i):
                continue
            try:
                status = self.status(i)
            except OSError:
                return None
            ids[str(status["header"]["member_id"])] = i
            named.add(str(status.get("leader", "0")))
        if len(named) != 1:
            return None
        return ids.get(named.pop())

    def wait_leader(self, timeout: float = START_TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while True:
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None and i not in self.down:
                    log = (self.workdir / f"m{i}.log").read_text(errors="replace")
                    raise RuntimeError(f"etcd member {i} exited with {proc.returncode}:\n{log[-3000:]}")
            found = self.leader()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"the etcd cluster has no leader after {timeout}s")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL member `i`: no goodbye to its peers or clients."""
        self.down.add(i)
        self._signal(i, signal.SIGKILL)

    def restart(self, i: int) -> None:
        if not self.alive(i):
            self.down.discard(i)
            self._spawn(i)

    def _signal(self, i: int, sig: signal.Signals) -> None:
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        self.down.update(range(self.size))
        for i in range(self.size):
            self._signal(i, signal.SIGTERM)
        shutil.rmtree(self.workdir, ignore_errors=True)
