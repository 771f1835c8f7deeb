"""Redis deployments that grow past one server, started on loopback for a test run: a Redis
Cluster (`RedisClusterServers`) and a master + replica watched by sentinels (`SentinelGroup`).

Each server is a process of our own on free ports with its data in a temp dir, stopped at
`stop()` (or at exit for the shared ones: `shared_cluster()` / `shared_sentinel()` start one
per test process on first use, so every contract suite and e2e module pays for it once).
A missing redis-server or redis-cli is a failure under CI=true (tests/support/services.missing).
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.services import require_binary
from tests.support.sidecar import free_port

#: How long a cluster or a sentinel group may take to form.
FORM_TIMEOUT = 30.0


def _wait(what: str, ready: object, timeout: float = FORM_TIMEOUT) -> None:
    """Poll `ready()` (a callable returning a truthy value) until it holds, or fail after `timeout`."""
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout}s")
        time.sleep(0.05)


class _Server:
    """One redis-server (or sentinel) process on `port`, its files in `workdir`."""

    def __init__(self, binary: str, workdir: Path, port: int, args: list[str], config: str = "") -> None:
        self.port = port
        self.workdir = workdir
        self._binary = binary
        self._args = args
        self._config = config
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        argv = [self._binary]
        if self._config:
            # Sentinels rewrite their config file, so it must be a file of their own.
            path = self.workdir / "server.conf"
            if not path.exists():
                path.write_text(self._config)
            argv.append(str(path))
        argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), *self._args]
        with (self.workdir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)  # type: ignore[arg-type]

    def wait_up(self) -> None:
        def pong() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis on {self.port} exited:\n{self.log()[-2000:]}")
            with self.client() as c:
                return bool(c.ping())

        _wait(f"redis on {self.port}", pong, 10.0)

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to clients or replicas."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class RedisClusterServers:
    """A Redis Cluster of `masters` masters (each with `replicas` replicas), no persistence."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.servers: list[_Server] = []
        self.workdir: Path | None = None

    def start(self) -> RedisClusterServers:
        if self.servers:
            return self
        binary = require_binary("redis-server")
        cli = require_binary("redis-cli")
        self.workdir = Path(tempfile.mkdtemp(prefix="layotto-redis-cluster-"))
        for i in range(self.masters * (1 + self.replicas)):
            port, bus = free_port(), free_port()
            args = [
                *("--cluster-enabled", "yes", "--cluster-port", str(bus)),
                *("--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(self.node_timeout_ms)),
                *("--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"),
            ]
            self.servers.append(_Server(binary, self.workdir / f"node-{i}", port, args))
        try:
            for server in self.servers:
                server.start()
            for server in self.servers:
                server.wait_up()
            addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=FORM_TIMEOUT,
            )
            for server in self.servers:
                _wait(f"cluster node {server.port}", lambda s=server: self._formed(s))
        except BaseException:
            self.stop()
            raise
        return self

    def _formed(self, server: _Server) -> bool:
        """All slots served, every node known, and (a replica) in sync with its master: only
        then can a replica take over."""
        with server.client(decode_responses=True) as c:
            info = c.cluster("INFO")
            nodes = c.cluster("NODES")
            replication = c.info("replication")
        expected = self.masters * (1 + self.replicas)
        synced = replication.get("role") == "master" or replication.get("master_link_status") == "up"
        return info.get("cluster_state") == "ok" and len(nodes) == expected and synced

    @property
    def seeds(self) -> str:
        """`redisHost` of a component on this cluster: every node, comma-separated."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.servers[0].port, socket_timeout=2)

    def master_ports(self) -> list[int]:
        with self.client() as c:
            return sorted(int(n.port) for n in c.get_primaries())

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


MASTER_NAME = "layotto-master"


class SentinelGroup:
    """A master, `replicas` replicas and `sentinels` sentinels (quorum = majority) monitoring it
    as MASTER_NAME. Failover is fast: the master is down after `down_after_ms`."""

    def __init__(self, replicas: int = 1, sentinels: int = 3, down_after_ms: int = 1000) -> None:
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.down_after_ms = down_after_ms
        self.master: _Server | None = None
        self.replicas: list[_Server] = []
        self.sentinels: list[_Server] = []
        self.workdir: Path | None = None

    def start(self) -> SentinelGroup:
        if self.master is not None:
            return self
        binary = require_binary("redis-server")
        self.workdir = Path(tempfile.mkdtemp(prefix="layotto-redis-sentinel-"))
        # No persistence; a replica's first sync starts at once (Redis 7 waits 5 s for more replicas).
        persistence = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        master = _Server(binary, self.workdir / "master", free_port(), persistence)
        self.master = master
        follow = [*persistence, "--replicaof", "127.0.0.1", str(master.port)]
        self.replicas = [
            _Server(binary, self.workdir / f"replica-{i}", free_port(), follow) for i in range(self.replica_count)
        ]
        quorum = self.sentinel_count // 2 + 1
        config = (
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.sentinels = [
            _Server(binary, self.workdir / f"sentinel-{i}", free_port(), ["--sentinel"], config)
            for i in range(self.sentinel_count)
        ]
        try:
            for server in [master, *self.replicas, *self.sentinels]:
                server.start()
            for server in [master, *self.replicas, *self.sentinels]:
                server.wait_up()
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_settled(self, timeout: float = FORM_TIMEOUT) -> None:
        """Until every live replica is in sync with the master and every live sentinel knows
        the same live master, its replicas and the other sentinels: only then is a write
        replicated and can a failover be voted and carried out."""

        def settled() -> bool:
            for replica in self.replicas:
                if replica.alive and replica is not self.current_master():
                    with replica.client(decode_responses=True) as c:
                        if c.info("replication").get("master_link_status") != "up":
                            return False
            live = [s for s in self.sentinels if s.alive]
            addresses = set()
            for sentinel in live:
                with sentinel.client(decode_responses=True) as c:
                    state = c.sentinel_master(MASTER_NAME)
                    replicas = [r for r in c.sentinel_slaves(MASTER_NAME) if not r["is_sdown"]]
                if state["is_sdown"] or state["is_odown"] or int(state["num-other-sentinels"]) < len(live) - 1:
                    return False
                if len(replicas) < len([r for r in self.all_servers() if r.alive]) - 1:
                    return False
                addresses.add(int(state["port"]))
            return len(addresses) == 1 and self.server_on(addresses.pop()).alive

        _wait("sentinel group", settled, timeout)

    def all_servers(self) -> list[_Server]:
        assert self.master is not None
        return [self.master, *self.replicas]

    def server_on(self, port: int) -> _Server:
        return next(s for s in self.all_servers() if s.port == port)

    def current_master(self) -> _Server:
        """The server the sentinels name as master now."""
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            with sentinel.client(decode_responses=True) as c:
                return self.server_on(int(c.sentinel_get_master_addr_by_name(MASTER_NAME)[1]))
        raise RuntimeError("no sentinel is running")

    @property
    def hosts(self) -> str:
        """`redisHost` of a component with `failover: true`: the sentinels, comma-separated."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def stop(self) -> None:
        for server in [*self.sentinels, *self.replicas, *([self.master] if self.master else [])]:
            server.stop()
        self.master, self.replicas, self.sentinels = None, [], []
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


_SHARED: dict[str, RedisClusterServers | SentinelGroup] = {}


def shared_cluster() -> RedisClusterServers:
    """The one 3-master cluster of this test process, started on first use."""
    found = _SHARED.get("cluster")
    if found is None:
        found = _SHARED["cluster"] = RedisClusterServers().start()
        atexit.register(found.stop)
    assert isinstance(found, RedisClusterServers)
    return found


def shared_sentinel() -> SentinelGroup:
    """The one sentinel-watched master + replica of this test process, started on first use.
    Tests that fail it over use a group of their own."""
    found = _SHARED.get("sentinel")
    if found is None:
        found = _SHARED["sentinel"] = SentinelGroup().start()
        atexit.register(found.stop)
    assert isinstance(found, SentinelGroup)
    return found


def cluster_metadata() -> dict[str, str]:
    """A redis component's metadata for the shared cluster (started on first use)."""
    return {"redisHost": shared_cluster().seeds, "redisType": "cluster"}


def dead_cluster_metadata() -> dict[str, str]:
    """A redis component's metadata for a cluster nobody runs (seed ports with no server)."""
    return {
        "redisHost": f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}",
        "redisType": "cluster",
        "maxRetries": "0",
        "dialTimeout": "1s",
    }


def dead_sentinel_metadata() -> dict[str, str]:
    """A redis component's metadata for sentinels nobody runs."""
    return {
        "redisHost": f"127.0.0.1:{free_port()}",
        "failover": "true",
        "sentinelMasterName": "nobody",
        "maxRetries": "0",
        "dialTimeout": "1s",
    }


def sentinel_metadata() -> dict[str, str]:
    """A redis component's metadata for the shared sentinel group (started on first use)."""
    return {"redisHost": shared_sentinel().hosts, "failover": "true", "sentinelMasterName": MASTER_NAME}
