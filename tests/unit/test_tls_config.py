"""TLS settings as read: MOSN's tls_context, the flags, the certificate checks and rotation, and
the TLS options of each backend's metadata (redis, etcd, NATS, PostgreSQL, MySQL) and
ZooKeeper's digest credential. Connecting over them is tests/e2e/test_tls*.py's."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from layotto.cli import TlsFlags, apply_tls_flags, main
from layotto.components._drivers import etcd, mysql, postgres, zookeeper
from layotto.components._drivers.redis import RedisSettings
from layotto.components.base import Metadata
from layotto.components.pubsub.nats import _tls as nats_tls
from layotto.config import layotto_json
from layotto.config.model import RuntimeConfig
from layotto.config.tls import Certificates, Pem, PemFile, load_material
from layotto.errors import ConfigError
from tests.support.certs import Authority, Issued
from tests.support.sidecar import layotto_config


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("ca"), "ca")


@pytest.fixture(scope="module")
def server(ca: Authority) -> Issued:
    return ca.issue("server")


def _with_tls_context(context: dict[str, Any], **listener: Any) -> RuntimeConfig:
    doc = layotto_config({}, grpc_port=34904)
    doc["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = context
    doc["servers"][0]["listeners"][0].update(listener)
    return layotto_json.load_document(doc, source="c.json")


# ---- MOSN's tls_context ----


def test_tls_context_with_status_true_is_the_api_listeners_tls(server: Issued, ca: Authority) -> None:
    cfg = _with_tls_context(
        {"status": True, "cert_chain": str(server.cert), "private_key": str(server.key), "ca_cert": str(ca.cert)}
    )
    assert cfg.tls is not None and not cfg.tls.mutual  # no verify_client: the CA is not the client's
    assert cfg.tls.cert.value == str(server.cert)
    assert cfg.tls.cert.where.endswith("filter_chains[0].tls_context.cert_chain")
    assert cfg.warnings == []


def test_tls_context_without_status_or_empty_is_plaintext() -> None:
    assert _with_tls_context({}).tls is None
    assert _with_tls_context({"status": False, "cert_chain": "x.crt"}).tls is None


def test_verify_client_requires_client_certificates_and_says_so_without_require(server: Issued, ca: Authority) -> None:
    base = {"status": True, "cert_chain": str(server.cert), "private_key": str(server.key), "ca_cert": str(ca.cert)}
    strict = _with_tls_context({**base, "verify_client": True, "require_client_cert": True})
    assert strict.tls is not None and strict.tls.mutual and strict.warnings == []
    loose = _with_tls_context({**base, "verify_client": True})
    assert loose.tls is not None and loose.tls.mutual
    assert loose.warnings and "client certificates are required" in loose.warnings[0]
    asked = _with_tls_context({**base, "require_client_cert": True})
    assert asked.tls is not None and not asked.tls.mutual
    assert "verifies nothing" in asked.warnings[0]


def test_tls_context_mistakes_name_their_json_path(server: Issued) -> None:
    with pytest.raises(ConfigError, match=r"tls_context: .*needs \"cert_chain\" and \"private_key\""):
        _with_tls_context({"status": True, "cert_chain": str(server.cert)})
    with pytest.raises(ConfigError, match=r"tls_context\.verify_client: verify_client needs the \"ca_cert\""):
        _with_tls_context(
            {"status": True, "cert_chain": str(server.cert), "private_key": str(server.key), "verify_client": True}
        )
    with pytest.raises(ConfigError, match=r"tls_context\.status: status must be true or false"):
        _with_tls_context({"status": "yes"})
    with pytest.raises(ConfigError, match=r'unknown key "cert_chian"'):
        _with_tls_context({"status": True, "cert_chian": "x"})


def test_mosn_settings_not_taken_are_a_warning_and_inspector_too(server: Issued) -> None:
    base = {"status": True, "cert_chain": str(server.cert), "private_key": str(server.key)}
    cfg = _with_tls_context({**base, "min_version": "TLSv1_3", "fall_back": True, "cipher_suites": ""}, inspector=True)
    assert cfg.tls is not None
    assert any("fall_back, min_version not taken" in w for w in cfg.warnings)
    assert any("plaintext connections are refused" in w for w in cfg.warnings)


def test_first_of_tls_context_set_is_taken(server: Issued) -> None:
    doc = layotto_config({}, grpc_port=34904)
    entry = {"status": True, "cert_chain": str(server.cert), "private_key": str(server.key)}
    doc["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context_set"] = [entry, entry]
    cfg = layotto_json.load_document(doc, source="c.json")
    assert cfg.tls is not None
    assert any("only the first tls_context is served" in w for w in cfg.warnings)


# ---- flags ----


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (TlsFlags(cert_file="c"), "--tls-cert-file and --tls-key-file together"),
        (TlsFlags(client_ca_file="ca"), "--tls-client-ca-file needs --tls-cert-file"),
        (TlsFlags(peer_ca_file="ca", peer_key_file="k"), "--peer-tls-cert-file and --peer-tls-key-file together"),
        (TlsFlags(peer_cert_file="c", peer_key_file="k"), "need --peer-tls-ca-file"),
        (TlsFlags(peer_server_name="n"), "need --peer-tls-ca-file"),
        (TlsFlags(internal_grpc_port=50002, peer_ca_file="ca"), "the internal listener serves this sidecar's"),
    ],
)
def test_tls_flags_that_do_not_go_together(flags: TlsFlags, problem: str) -> None:
    assert problem in (flags.problem() or "")


def test_tls_flags_override_the_config_and_place_the_internal_listener() -> None:
    cfg = RuntimeConfig(grpc_address="0.0.0.0:34904")
    apply_tls_flags(
        cfg,
        TlsFlags(
            cert_file="s.crt",
            key_file="s.key",
            client_ca_file="ca.crt",
            internal_grpc_port=50002,
            peer_ca_file="ca.crt",
            peer_cert_file="p.crt",
            peer_key_file="p.key",
            peer_server_name="sidecars.test",
        ),
    )
    assert cfg.tls is not None and cfg.tls.mutual and cfg.tls.cert.where == "--tls-cert-file"
    assert cfg.internal_grpc_address == "0.0.0.0:50002"
    assert cfg.peer_tls is not None and cfg.peer_tls.server_name == "sidecars.test" and cfg.peer_tls.mutual
    assert TlsFlags(internal_grpc_port=50002).problem() is None  # a plaintext internal listener is allowed


def test_validate_reads_the_certificate_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(layotto_config({}, grpc_port=34904)))
    missing = tmp_path / "missing.crt"
    code = main(["validate", "-c", str(config), "--tls-cert-file", str(missing), "--tls-key-file", str(missing)])
    assert code == 2
    assert f"--tls-cert-file: cannot read the certificate file '{missing}'" in capsys.readouterr().err


# ---- certificate checks ----


def test_a_key_that_is_not_the_certificates_is_refused(ca: Authority, server: Issued) -> None:
    other = ca.issue("other")
    with pytest.raises(ConfigError, match=r"is not the key of the certificate") as info:
        load_material(Pem(str(server.cert), "certificate", "--c"), Pem(str(other.key), "private key", "--k"), None)
    assert str(info.value).startswith("--k:")


def test_what_is_not_pem_or_is_encrypted_is_refused(tmp_path: Path, server: Issued) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        load_material(None, None, Pem(str(junk), "CA certificates", "--ca"))
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(server.key.read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match="is encrypted"):
        load_material(Pem(str(server.cert), "certificate", "--c"), Pem(str(locked), "private key", "--k"), None)
    with pytest.raises(ConfigError, match="needs its private key too"):
        load_material(Pem(str(server.cert), "certificate", "--c"), None, None)


def test_an_expired_certificate_is_a_warning(ca: Authority) -> None:
    old = ca.issue("old", days=-1)
    material = load_material(Pem(str(old.cert), "certificate", "--c"), Pem(str(old.key), "private key", "--k"), None)
    assert len(material.warnings) == 1 and "CN=old" in material.warnings[0] and "expired" in material.warnings[0]


def test_certificates_are_read_again_when_the_files_change(tmp_path: Path, ca: Authority, server: Issued) -> None:
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_bytes(server.cert.read_bytes())
    key.write_bytes(server.key.read_bytes())
    now = [0.0]
    certs = Certificates(
        Pem(str(cert), "certificate", "c"), Pem(str(key), "private key", "k"), None, clock=lambda: now[0]
    )
    first = certs.material
    renewed = ca.issue("renewed")
    cert.write_bytes(renewed.cert.read_bytes())  # half-way: the old key with the new certificate
    now[0] = 0.5
    assert not certs.refresh()  # looked at most once a second
    now[0] = 1.0
    assert not certs.refresh() and certs.material is first  # the pair does not match yet: kept
    key.write_bytes(renewed.key.read_bytes())
    os.utime(key, ns=(1, 1))  # a stamp of its own even within the file system's time resolution
    now[0] = 2.0
    assert certs.refresh() and certs.material.chain == renewed.cert.read_bytes() and certs.generation == 1
    now[0] = 3.0
    assert not certs.refresh()


def test_pem_file_is_readable_by_path_until_closed() -> None:
    holder = PemFile(b"-----BEGIN X-----\n")
    path = holder.path
    assert Path(path).read_bytes() == b"-----BEGIN X-----\n"
    inode = os.stat(path).st_ino
    holder.close()
    try:
        gone = os.stat(path).st_ino != inode  # the descriptor's number may be another file's now
    except FileNotFoundError:
        gone = True
    assert gone


# ---- backends ----


def test_redis_certificates_from_pem_text_or_paths(ca: Authority, server: Issued) -> None:
    text = RedisSettings.from_metadata(
        Metadata(
            {
                "redisHost": "h:6380",
                "enableTLS": "true",
                "caCert": ca.pem,
                "clientCert": server.pem,
                "clientKey": server.key_pem,
            },
            where="redis",
        )
    )
    assert text.ca_data == ca.pem and text.cert_file and text.key_file and len(text.pem_files) == 2
    assert Path(text.cert_file).read_text() == server.pem  # what redis-py opens
    kwargs = text._connection_kwargs()
    assert (kwargs["ssl_certfile"], kwargs["ssl_ca_data"]) == (text.cert_file, ca.pem)
    assert isinstance(text.ssl_context(), ssl.SSLContext)
    paths = RedisSettings.from_metadata(
        Metadata(
            {"redisHost": "h", "enableTLS": "true", "clientCert": str(server.cert), "clientKey": str(server.key)},
            where="redis",
        )
    )
    assert (paths.cert_file, paths.key_file, paths.pem_files) == (str(server.cert), str(server.key), ())


def test_redis_certificates_without_enable_tls_or_halves_are_refused(server: Issued) -> None:
    with pytest.raises(ConfigError, match=r"redis\.metadata\.caCert: caCert is set but enableTLS is not"):
        RedisSettings.from_metadata(Metadata({"redisHost": "h", "caCert": server.pem}, where="redis"))
    with pytest.raises(ConfigError, match=r"clientCert: a certificate needs its private key too"):
        RedisSettings.from_metadata(
            Metadata({"redisHost": "h", "enableTLS": "true", "clientCert": server.pem}, where="redis")
        )


def test_etcd_tls_from_upstream_keys_or_an_https_endpoint(ca: Authority, server: Issued) -> None:
    assert etcd.tls_material(Metadata({"endpoints": "127.0.0.1:2379"})) is None
    https = etcd.tls_material(Metadata({"endpoints": "https://127.0.0.1:2379"}))
    assert https is not None and https.ca is None  # the system's CAs
    given = etcd.tls_material(
        Metadata(
            {"endpoints": "h:2379", "tlsCa": str(ca.cert), "tlsCert": str(server.cert), "tlsCertKey": str(server.key)}
        )
    )
    assert given is not None and given.ca == ca.cert.read_bytes() and given.chain == server.cert.read_bytes()
    with pytest.raises(ConfigError, match=r"lock\.metadata\.tlsCa: cannot read the CA certificates file"):
        etcd.tls_material(Metadata({"endpoints": "h", "tlsCa": "/nonexistent/ca.crt"}, where="lock"))


def test_nats_tls_from_dapr_keys_or_a_tls_url(ca: Authority, server: Issued) -> None:
    assert nats_tls(Metadata({}), "nats://127.0.0.1:4222") is None
    assert isinstance(nats_tls(Metadata({}), "tls://127.0.0.1:4222"), ssl.SSLContext)
    context = nats_tls(
        Metadata({"tls_ca_cert": str(ca.cert), "tls_client_cert": str(server.cert), "tls_client_key": str(server.key)}),
        "nats://h:4222",
    )
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_postgres_tls_keywords_go_to_asyncpg_and_their_files_are_checked(ca: Authority) -> None:
    args = postgres.connect_args(f"host=db port=5432 user=u dbname=d sslmode=verify-full sslrootcert={ca.cert}", "cs")
    assert (
        args["host"] == "db"
        and args["dsn"] == f"postgresql://?sslmode=verify-full&sslrootcert={str(ca.cert).replace('/', '%2F')}"
    )
    assert postgres.address(args) == "db:5432/d"
    assert postgres.connect_args("host=db sslmode=require", "cs")["ssl"] == "require"
    with pytest.raises(ConfigError, match=r"cs: sslrootcert names no readable file"):
        postgres.connect_args("host=db sslmode=verify-ca sslrootcert=/nonexistent.crt", "cs")
    with pytest.raises(ConfigError, match=r"cs: sslkey names no readable file"):
        postgres.connect_args("postgresql://u@db/d?sslmode=require&sslkey=/nonexistent.key", "cs")
    with pytest.raises(ConfigError, match="sslmode 'verify' is not one of"):
        postgres.connect_args("host=db sslmode=verify", "cs")


def test_mysql_tls_parameter_as_go_sql_driver_reads_it(ca: Authority) -> None:
    def ssl_of(dsn: str, pem_path: str = "") -> Any:
        return mysql.parse_go_dsn(dsn, "cs").connect_args(pem_path=pem_path, where="pemPath").get("ssl")

    assert ssl_of("u@tcp(h:3306)/d") is None and ssl_of("u@tcp(h)/d?tls=false") is None
    verified = ssl_of("u@tcp(h)/d?tls=true")
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    custom = ssl_of("u@tcp(h)/d?tls=custom", str(ca.cert))
    assert custom.verify_mode == ssl.CERT_REQUIRED and custom.get_ca_certs()[0]["subject"] == ((("commonName", "ca"),),)
    assert ssl_of("u@tcp(h)/d?tls=skip-verify").verify_mode == ssl.CERT_NONE
    with pytest.raises(ConfigError, match="tls=custom names the CA of the pemPath metadata"):
        ssl_of("u@tcp(h)/d?tls=custom")
    with pytest.raises(ConfigError, match="pemPath is set, but the connectionString's tls is not set"):
        ssl_of("u@tcp(h)/d", str(ca.cert))
    with pytest.raises(ConfigError, match="tls='yes' is not true, custom"):
        ssl_of("u@tcp(h)/d?tls=yes")


def test_zookeeper_digest_credential() -> None:
    assert zookeeper.credential(Metadata({})) is None
    assert zookeeper.credential(Metadata({"zookeeperPassword": "app:s3cret"})) == b"app:s3cret"
    assert zookeeper.credential(Metadata({"zookeeperPassword": "s:3", "zookeeperUsername": "app"})) == b"app:s:3"
    with pytest.raises(ConfigError, match=r"zk\.metadata\.zookeeperPassword: zookeeperPassword must be a digest"):
        zookeeper.credential(Metadata({"zookeeperPassword": "s3cret"}, where="zk"))
    with pytest.raises(ConfigError, match="zookeeperUsername needs zookeeperPassword"):
        zookeeper.credential(Metadata({"zookeeperUsername": "app"}))
