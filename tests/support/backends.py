"""Backends a test may take away and bring back, without touching the shared services.

Two kinds, one interface (`Backend`: `port`, `down()`, `up()`, `drop_connections()`, `close()`):

- `ServerProcess`: a THROWAWAY server (redis-server, etcd, ZooKeeper, nats-server, mosquitto)
  on a free loopback port with its own data directory. `down()` SIGKILLs it (a crash: no
  goodbye to clients), `up()` starts it again on the same port and data.
- `TcpProxy`: a loopback port forwarding to a shared server (PostgreSQL, MariaDB, RabbitMQ, ...)
  that cannot have a second copy here. `down()` closes the listener and aborts every forwarded
  connection (to a client this is a server that went away: resets, then refused connections);
  `up()` listens again. The shared server itself is never stopped.

`drop_connections()` aborts the established connections but leaves the backend reachable,
as `pg_terminate_backend` / MariaDB `KILL` / a broker restart between two calls would.

Everything here is async so that an in-process sidecar on the same event loop keeps running
while a test waits for a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

from tests.support.services import SERVICES, missing, require
from tests.support.sidecar import free_port

#: How long a (re)started server may take to accept connections. ZooKeeper's JVM is the slow one.
START_TIMEOUT = 20.0


class Backend(Protocol):
    name: str
    port: int

    async def down(self) -> None: ...
    async def freeze(self) -> None: ...
    async def thaw(self) -> None: ...
    async def up(self) -> None: ...
    async def drop_connections(self) -> None: ...
    async def close(self) -> None: ...


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ServerProcess:
    """A server process of our own. `argv(port, workdir)` builds its command line."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int, Path], list[str]],
        *,
        ready: Callable[[int], Awaitable[bool]] = _accepts,
    ) -> None:
        self.name = name
        self._ready = ready
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"layotto-{name}-"))
        self._argv = argv
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def up(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            return
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv(self.port, self.workdir), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not await self._ready(self.port):
            if self._proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not accepting on {self.port} after {START_TIMEOUT}s")
            await asyncio.sleep(0.02)

    async def down(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash or a pulled cable."""
        await self._signal(signal.SIGKILL)

    async def drop_connections(self) -> None:
        """A fast restart: clients lose their connections, the server is back at once."""
        await self.down()
        await self.up()

    async def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as a hung or partitioned server."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGSTOP)

    async def thaw(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGCONT)

    async def close(self) -> None:
        await self.thaw()
        await self._signal(signal.SIGTERM, grace=5.0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def _signal(self, sig: signal.Signals, grace: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class TcpProxy:
    """127.0.0.1:<port> forwarded to 127.0.0.1:<target_port>."""

    def __init__(self, name: str, target_port: int) -> None:
        self.name = name
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def freeze(self) -> None:
        """Connections are accepted and kept, but no byte goes through: a hung server."""
        self._flowing.clear()

    async def thaw(self) -> None:
        self._flowing.set()

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.drop_connections()

    async def drop_connections(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        self._flowing.set()
        await self.down()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
            # A clean close on one side is passed on as a clean close.
            if dst.can_write_eof():
                dst.write_eof()


# ---- the servers ----


def _binary(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    missing(f"{name} is not installed")


def redis_server() -> ServerProcess:
    binary = _binary("redis-server")
    # No persistence: a restarted server is empty, as a failed-over replica without the data may be.
    return ServerProcess(
        "redis",
        lambda port, _: [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    )


def etcd_server() -> ServerProcess:
    binary = _binary("etcd")
    peer = free_port()

    def argv(port: int, workdir: Path) -> list[str]:
        client, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
        return [
            binary,
            *("--name", "default", "--data-dir", str(workdir / "data")),
            *("--listen-client-urls", client, "--advertise-client-urls", client),
            *("--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url),
            *("--initial-cluster", f"default={peer_url}", "--log-level", "warn"),
        ]

    return ServerProcess("etcd", argv)


_ZK_JARS = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


async def _zookeeper_serving(port: int) -> bool:
    """The port opens before ZooKeeper serves; `srvr` (whitelisted by default) tells."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"srvr")
        reply = await asyncio.wait_for(reader.read(), 2.0)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    return b"Mode:" in reply


def zookeeper_server() -> ServerProcess:
    java = _binary("java")
    if not Path("/usr/share/java/zookeeper.jar").is_file():
        missing("ZooKeeper (/usr/share/java/zookeeper.jar) is not installed")

    def argv(port: int, workdir: Path) -> list[str]:
        config = workdir / "zoo.cfg"
        config.write_text(
            "tickTime=500\n"  # short ticks: sessions of dead clients expire in seconds
            f"dataDir={workdir / 'data'}\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n"
        )
        return [
            java,
            "-Xmx128m",
            f"-Dzookeeper.log.dir={workdir}",
            "-cp",
            _ZK_JARS,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(config),
        ]

    return ServerProcess("zookeeper", argv, ready=_zookeeper_serving)


def nats_server() -> ServerProcess:
    binary = _binary("nats-server", "/usr/sbin/nats-server")
    return ServerProcess(
        "nats", lambda port, workdir: [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir / "js")]
    )


def mosquitto_server() -> ServerProcess:
    binary = _binary("mosquitto", "/usr/sbin/mosquitto")
    # `-p` alone listens on loopback only, anonymous clients allowed (mosquitto 2).
    return ServerProcess("mqtt", lambda port, _: [binary, "-p", str(port)])


def http_server() -> ServerProcess:
    """Python's own file server: GET / answers 200 with a listing of its work directory."""
    return ServerProcess(
        "http",
        lambda port, workdir: [
            sys.executable,
            *("-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(workdir)),
        ],
    )


def proxy_to(service: str) -> TcpProxy:
    """A cuttable path to a shared service (see tests/support/services.SERVICES)."""
    require(service)
    return TcpProxy(service, SERVICES[service][1])


#: Every kind of backend, by the name a test table uses.
KINDS: dict[str, Callable[[], Backend]] = {
    "redis": redis_server,
    "etcd": etcd_server,
    "zookeeper": zookeeper_server,
    "nats": nats_server,
    "mqtt": mosquitto_server,
    "http": http_server,
    "postgresql": lambda: proxy_to("postgresql"),
    "mysql": lambda: proxy_to("mysql"),
    "rabbitmq": lambda: proxy_to("rabbitmq"),
}


@contextlib.asynccontextmanager
async def running(kind: str | Backend) -> AsyncIterator[Backend]:
    """A started backend of `kind` (or the given one), closed at exit."""
    backend = KINDS[kind]() if isinstance(kind, str) else kind
    try:
        await backend.up()
        yield backend
    finally:
        await backend.close()
