"""The components over TLS to their backends, each a throwaway TLS server started here with
certificates the tests issue (redis-server --tls-port, etcd with --client-cert-auth,
nats-server --tlsverify, a PostgreSQL cluster made by initdb with ssl on, a MariaDB made by
mariadb-install-db with ssl), and ZooKeeper's digest credential on the shared ZooKeeper.

Each backend is reached with the right CA and client certificate, and refused with a CA that
did not sign its certificate and without a client certificate where it requires one. The shared
MariaDB (no TLS) shows that a DSN asking for TLS is not quietly served in plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import aiozk
import pytest
from aiozk import exc as zk_errors

from layotto.components.base import Component, ComponentContext, Metadata
from layotto.components.lock import base as lock
from layotto.components.lock.etcd import EtcdLock
from layotto.components.lock.redis import RedisLock
from layotto.components.lock.zookeeper import ZookeeperLock
from layotto.components.pubsub.nats import JetStreamPubSub
from layotto.components.sequencer.etcd import EtcdSequencer
from layotto.components.state import base as state
from layotto.components.state.mysql import MysqlStateStore
from layotto.components.state.postgresql import PostgresqlStateStore
from layotto.components.state.redis import RedisStateStore
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError
from tests.support.backends import ServerProcess
from tests.support.certs import Authority, Issued
from tests.support.services import MYSQL, missing, require, require_binary
from tests.support.sidecar import free_port


@dataclass(frozen=True)
class Pki:
    ca: Authority
    rogue: Authority
    server: Issued
    client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority(folder / "ca", "ca")
    return Pki(ca, Authority(folder / "rogue", "rogue"), ca.issue("server"), ca.issue("client"))


async def _started(component: Component, metadata: dict[str, Any], block: str) -> Any:
    await component.init(Metadata(metadata, where="test"), ComponentContext("tls", block, "app-tls"))
    return component


@contextlib.asynccontextmanager
async def _component(component: Component, metadata: dict[str, Any], block: str) -> AsyncIterator[Any]:
    await _started(component, metadata, block)
    try:
        yield component
    finally:
        await component.close()


async def _fails(component: Component, metadata: dict[str, Any], block: str) -> BaseException:
    """The error `init` raises (the first connection); a component that starts is closed, and a failure."""
    try:
        await _started(component, metadata, block)
    except (BackendUnavailableError, ComponentError) as exc:
        await component.close()
        return exc
    await component.close()
    raise AssertionError(f"{type(component).__name__} started with {metadata}")


@contextlib.asynccontextmanager
async def _server(process: ServerProcess) -> AsyncIterator[ServerProcess]:
    try:
        await process.up()
    except RuntimeError as exc:
        missing(f"{process.name} with TLS did not start: {exc}")
    try:
        yield process
    finally:
        await process.close()


# ---- redis ----


@pytest.fixture(scope="module")
async def redis_tls(pki: Pki) -> AsyncIterator[int]:
    binary = require_binary("redis-server")
    process = ServerProcess(
        "redis-tls",
        lambda port, _: [
            binary,
            *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--tls-cert-file", str(pki.server.cert), "--tls-key-file", str(pki.server.key)),
            *("--tls-ca-cert-file", str(pki.ca.cert), "--tls-auth-clients", "yes"),
        ],
    )
    async with _server(process):
        yield process.port


def _redis(port: int, **extra: str) -> dict[str, str]:
    return {"redisHost": f"127.0.0.1:{port}", "enableTLS": "true", **extra}


async def test_redis_state_and_lock_over_mtls(redis_tls: int, pki: Pki) -> None:
    # Dapr's form: PEM text in the metadata (the state store), and paths (the lock).
    text = _redis(redis_tls, caCert=pki.ca.pem, clientCert=pki.client.pem, clientKey=pki.client.key_pem)
    async with _component(RedisStateStore(), text, "state") as store:
        key = f"tls-{uuid.uuid4().hex}"
        await store.set(state.SetRequest(key=key, value=b"over tls"))
        found = await store.get(state.GetRequest(key=key))
        assert found is not None and found.data == b"over tls"
    paths = _redis(redis_tls, caCert=str(pki.ca.cert), clientCert=str(pki.client.cert), clientKey=str(pki.client.key))
    async with _component(RedisLock(), paths, "lock") as locks:  # the autopipelined connection
        assert await locks.try_lock(lock.TryLockRequest(key=f"tls-{uuid.uuid4().hex}", owner="me", expire=5))


async def test_redis_refuses_a_server_of_another_ca_and_is_refused_without_a_client_certificate(
    redis_tls: int, pki: Pki
) -> None:
    client = {"clientCert": pki.client.pem, "clientKey": pki.client.key_pem}
    wrong_ca = await _fails(RedisStateStore(), _redis(redis_tls, caCert=pki.rogue.pem, **client), "state")
    assert "certificate verify failed" in str(wrong_ca)
    await _fails(RedisLock(), _redis(redis_tls, caCert=pki.ca.pem), "lock")
    await _fails(RedisStateStore(), {"redisHost": f"127.0.0.1:{redis_tls}"}, "state")  # plaintext


# ---- etcd ----


@pytest.fixture(scope="module")
async def etcd_tls(pki: Pki) -> AsyncIterator[int]:
    binary = require_binary("etcd")
    peer = free_port()

    def argv(port: int, workdir: Path) -> list[str]:
        client, peer_url = f"https://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
        return [
            binary,
            *("--name", "tls", "--data-dir", str(workdir / "data"), "--log-level", "warn"),
            *("--listen-client-urls", client, "--advertise-client-urls", client),
            *("--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url),
            *("--initial-cluster", f"tls={peer_url}"),
            *("--cert-file", str(pki.server.cert), "--key-file", str(pki.server.key)),
            *("--trusted-ca-file", str(pki.ca.cert), "--client-cert-auth"),
        ]

    async with _server(ServerProcess("etcd-tls", argv)) as process:
        yield process.port


async def test_etcd_lock_and_sequencer_over_mtls_with_upstreams_keys(etcd_tls: int, pki: Pki) -> None:
    metadata = {
        "endpoints": f"127.0.0.1:{etcd_tls}",
        "tlsCa": str(pki.ca.cert),
        "tlsCert": str(pki.client.cert),
        "tlsCertKey": str(pki.client.key),
        "dialTimeout": "3",
    }
    async with _component(EtcdLock(), metadata, "lock") as locks:
        assert await locks.try_lock(lock.TryLockRequest(key=f"tls-{uuid.uuid4().hex}", owner="me", expire=5))
    async with _component(EtcdSequencer(), metadata, "sequencer") as ids:
        key = f"tls-{uuid.uuid4().hex}"
        assert [await ids.next_id(key, strong=True, metadata={}) for _ in range(2)] == [1, 2]


async def test_etcd_refuses_a_server_of_another_ca_and_is_refused_without_a_client_certificate(
    etcd_tls: int, pki: Pki
) -> None:
    base = {"endpoints": f"127.0.0.1:{etcd_tls}", "dialTimeout": "2"}
    client = {"tlsCert": str(pki.client.cert), "tlsCertKey": str(pki.client.key)}
    wrong_ca = await _fails(EtcdLock(), {**base, **client, "tlsCa": str(pki.rogue.cert)}, "lock")
    assert "CERTIFICATE_VERIFY_FAILED" in str(wrong_ca)
    await _fails(EtcdLock(), {**base, "tlsCa": str(pki.ca.cert)}, "lock")
    await _fails(EtcdLock(), base, "lock")  # plaintext to a TLS port


# ---- NATS ----


@pytest.fixture(scope="module")
async def nats_tls(pki: Pki) -> AsyncIterator[int]:
    binary = require_binary("nats-server")
    process = ServerProcess(
        "nats-tls",
        lambda port, workdir: [
            binary,
            *("-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir / "js")),
            *("--tls", "--tlscert", str(pki.server.cert), "--tlskey", str(pki.server.key)),
            *("--tlscacert", str(pki.ca.cert), "--tlsverify"),
        ],
    )
    async with _server(process):
        yield process.port


async def test_nats_publishes_and_delivers_over_mtls(nats_tls: int, pki: Pki) -> None:
    metadata = {
        "natsURL": f"tls://127.0.0.1:{nats_tls}",
        "tls_ca_cert": str(pki.ca.cert),
        "tls_client_cert": str(pki.client.cert),
        "tls_client_key": str(pki.client.key),
        "connectTimeout": "2s",
    }
    async with _component(JetStreamPubSub(), metadata, "pubsub") as pubsub:
        topic = f"tls-{uuid.uuid4().hex}"
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def handler(message: Any) -> None:
            await received.put(message.data)

        subscription = await pubsub.subscribe(topic, handler, {})
        try:
            await pubsub.publish(topic, b"over tls", {})
            assert await asyncio.wait_for(received.get(), 10) == b"over tls"
        finally:
            await subscription.close()


async def test_nats_refuses_a_server_of_another_ca_and_is_refused_without_a_client_certificate(
    nats_tls: int, pki: Pki
) -> None:
    url = {"natsURL": f"tls://127.0.0.1:{nats_tls}", "connectTimeout": "2s"}
    client = {"tls_client_cert": str(pki.client.cert), "tls_client_key": str(pki.client.key)}
    wrong_ca = await _fails(JetStreamPubSub(), {**url, **client, "tls_ca_cert": str(pki.rogue.cert)}, "pubsub")
    assert "certificate verify failed" in str(wrong_ca)
    await _fails(JetStreamPubSub(), {**url, "tls_ca_cert": str(pki.ca.cert)}, "pubsub")


# ---- PostgreSQL: a cluster of its own (initdb), TLS only, client certificates required ----


@dataclass
class _Postgres:
    port: int
    folder: Path


@pytest.fixture(scope="module")
def postgres_tls(pki: Pki) -> Iterator[_Postgres]:
    initdb = shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb"
    server = shutil.which("postgres") or "/usr/lib/postgresql/15/bin/postgres"
    if not (Path(initdb).is_file() and Path(server).is_file()):
        missing("PostgreSQL's initdb/postgres are not installed")
    # PostgreSQL will not run as root: the cluster and its key belong to the postgres user.
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="layotto-pg-tls-"))
    for name, source in (("server.crt", pki.server.cert), ("server.key", pki.server.key), ("ca.crt", pki.ca.cert)):
        shutil.copy(source, folder / name)
    (folder / "server.key").chmod(0o600)
    if user is not None:
        shutil.chown(folder, user)
        for path in folder.iterdir():
            shutil.chown(path, user)
    data = folder / "data"
    subprocess.run(
        [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
        user=user,
    )
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust clientcert=verify-ca\nhostnossl all all 127.0.0.1/32 reject\n"
    )
    port = free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(folder),
        "ssl": "on",
        "ssl_cert_file": str(folder / "server.crt"),
        "ssl_key_file": str(folder / "server.key"),
        "ssl_ca_file": str(folder / "ca.crt"),
        "fsync": "off",
    }
    argv = [server, "-D", str(data), *(f"-c{key}={value}" for key, value in options.items())]
    with (folder / "server.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, user=user)
    try:
        deadline = time.monotonic() + 20
        while not (folder / f".s.PGSQL.{port}").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                missing(f"PostgreSQL with TLS did not start:\n{(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield _Postgres(port, folder)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _pg(port: int, tls: str) -> dict[str, str]:
    return {"connectionString": f"host=127.0.0.1 port={port} user=postgres dbname=postgres {tls}", "timeout": "5s"}


async def test_postgres_state_over_mtls_with_libpqs_keywords(postgres_tls: _Postgres, pki: Pki) -> None:
    tls = f"sslmode=verify-full sslrootcert={pki.ca.cert} sslcert={pki.client.cert} sslkey={pki.client.key}"
    async with _component(PostgresqlStateStore(), _pg(postgres_tls.port, tls), "state") as store:
        key = f"tls-{uuid.uuid4().hex}"
        await store.set(state.SetRequest(key=key, value=b"over tls"))
        found = await store.get(state.GetRequest(key=key))
        assert found is not None and found.data == b"over tls"
    url = {
        "connectionString": f"postgresql://postgres@127.0.0.1:{postgres_tls.port}/postgres?sslmode=verify-ca"
        f"&sslrootcert={pki.ca.cert}&sslcert={pki.client.cert}&sslkey={pki.client.key}"
    }
    async with _component(PostgresqlStateStore(), url, "state") as store:
        assert await store.get(state.GetRequest(key="absent")) is None


async def test_postgres_refuses_a_server_of_another_ca_and_is_refused_without_a_client_certificate(
    postgres_tls: _Postgres, pki: Pki
) -> None:
    client = f"sslcert={pki.client.cert} sslkey={pki.client.key}"
    wrong_ca = await _fails(
        PostgresqlStateStore(),
        _pg(postgres_tls.port, f"sslmode=verify-full sslrootcert={pki.rogue.cert} {client}"),
        "state",
    )
    assert "certificate verify failed" in str(wrong_ca)
    no_cert = await _fails(
        PostgresqlStateStore(), _pg(postgres_tls.port, f"sslmode=verify-full sslrootcert={pki.ca.cert}"), "state"
    )
    assert "certificate" in str(no_cert)
    await _fails(PostgresqlStateStore(), _pg(postgres_tls.port, "sslmode=disable"), "state")


# ---- MariaDB: a server of its own with TLS; the shared one has none ----


@pytest.fixture(scope="module")
async def mariadb_tls(pki: Pki) -> AsyncIterator[int]:
    install = require_binary("mariadb-install-db")
    server = require_binary("mariadbd")
    folder = Path(tempfile.mkdtemp(prefix="layotto-mariadb-tls-"))
    data, socket = folder / "data", folder / "mysqld.sock"
    done = await asyncio.to_thread(
        subprocess.run,
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        capture_output=True,
    )
    if done.returncode != 0:
        missing(f"mariadb-install-db failed: {done.stderr.decode()[-2000:]}")
    process = ServerProcess(
        "mariadb-tls",
        lambda port, _: [
            server,
            *("--no-defaults", f"--datadir={data}", f"--socket={socket}", f"--port={port}", "--bind-address=127.0.0.1"),
            *("--user=root", "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"),
            *(f"--ssl-cert={pki.server.cert}", f"--ssl-key={pki.server.key}", f"--ssl-ca={pki.ca.cert}"),
        ],
    )
    try:
        async with _server(process):
            conn = await aiomysql.connect(unix_socket=str(socket), user="root")
            async with conn.cursor() as cur:
                await cur.execute("CREATE DATABASE test")
                # Anonymous accounts would be matched before 'tls'@'%' for a login from loopback.
                await cur.execute("DELETE FROM mysql.global_priv WHERE User = ''")
                await cur.execute("FLUSH PRIVILEGES")
                await cur.execute("CREATE USER 'tls'@'%' REQUIRE SSL")  # plaintext logins refused
                await cur.execute("GRANT ALL ON *.* TO 'tls'@'%'")
            conn.close()
            yield process.port
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _my(port: int, tls: str, **extra: str) -> dict[str, str]:
    return {"connectionString": f"tls@tcp(127.0.0.1:{port})/test{tls}", "timeoutInSeconds": "5", **extra}


async def test_mysql_state_over_tls_with_daprs_pem_path(mariadb_tls: int, pki: Pki) -> None:
    async with _component(MysqlStateStore(), _my(mariadb_tls, "?tls=custom", pemPath=str(pki.ca.cert)), "state") as s:
        key = f"tls-{uuid.uuid4().hex}"
        await s.set(state.SetRequest(key=key, value=b"over tls"))
        found = await s.get(state.GetRequest(key=key))
        assert found is not None and found.data == b"over tls"


async def test_mysql_refuses_a_server_of_another_ca_and_plaintext_is_refused(mariadb_tls: int, pki: Pki) -> None:
    wrong_ca = await _fails(MysqlStateStore(), _my(mariadb_tls, "?tls=custom", pemPath=str(pki.rogue.cert)), "state")
    assert "certificate verify failed" in str(wrong_ca)
    refused = await _fails(MysqlStateStore(), _my(mariadb_tls, ""), "state")  # REQUIRE SSL
    assert "Access denied" in str(refused)


async def test_mysql_asking_for_tls_is_not_served_in_plaintext_by_a_server_without_it() -> None:
    require("mysql")
    dsn = f"{MYSQL['user']}@tcp({MYSQL['host']}:{MYSQL['port']})/{MYSQL['database']}?tls=skip-verify"
    refused = await _fails(MysqlStateStore(), {"connectionString": dsn, "timeoutInSeconds": "5"}, "state")
    assert "did not start TLS" in str(refused)
    preferred = {"connectionString": dsn.replace("skip-verify", "preferred"), "timeoutInSeconds": "5"}
    async with _component(MysqlStateStore(), preferred, "state") as store:  # "preferred" takes plaintext
        assert await store.get(state.GetRequest(key=f"absent-{uuid.uuid4().hex}")) is None


# ---- ZooKeeper: the digest credential of zookeeperPassword ----


async def test_zookeeper_lock_znodes_belong_to_the_digest_identity_also_after_a_reconnect() -> None:
    require("zookeeper")
    metadata = {"zookeeperHosts": "127.0.0.1:2181", "zookeeperPassword": f"layotto-{uuid.uuid4().hex[:8]}:s3cret"}
    key = f"tls-{uuid.uuid4().hex}"
    async with _component(ZookeeperLock(), metadata, "lock") as locks:
        assert await locks.try_lock(lock.TryLockRequest(key=key, owner="me", expire=30))
        outsider = aiozk.ZKClient("127.0.0.1:2181")
        await outsider.start()
        try:
            with pytest.raises(zk_errors.NoAuth):
                await outsider.get_data(f"/{key}")
            # The credential is sent again on a new connection: the znode stays reachable.
            session = locks._zk.session
            first = session.conn
            first.writer.transport.abort()
            deadline = time.monotonic() + 10
            while session.conn is first or session.state.current_state != "connected":
                assert time.monotonic() < deadline, "the session did not reconnect"
                await asyncio.sleep(0.02)
            assert await locks.unlock(lock.UnlockRequest(key=key, owner="me")) == lock.LockStatus.SUCCESS
        finally:
            await outsider.close()
    with pytest.raises(ConfigError, match="zookeeperPassword must be a digest credential"):
        await ZookeeperLock().init(
            Metadata({"zookeeperHosts": "127.0.0.1:2181", "zookeeperPassword": "s3cret"}, where="t"),
            ComponentContext("tls", "lock", "app-tls"),
        )
