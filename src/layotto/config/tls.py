"""TLS settings and the certificates they name (docs/operations.md#tls).

- `ServerTls`: the API listeners' (both gRPC APIs on their one port, Dapr's HTTP API): a
  certificate chain and its key, and optionally the CA client certificates must chain to; with
  one, a client that presents no certificate of that CA is refused (mTLS).
- `PeerTls`: sidecar to sidecar invocation's: the CA the other sidecar's certificate must chain
  to, and this sidecar's certificate, presented as the client when it invokes and as the server
  on the internal listener, which then requires the other side's.
- `Pem`: one certificate, key or CA bundle, named by a path or given as PEM text (MOSN's
  `tls_context` and Dapr's component metadata take either).
- `Certificates`: the material of a setting, read again when one of its files changes, so a
  rotated certificate is served from the next handshake on without a restart.
- What is built from them: ssl contexts for the HTTP listener (`http_server_context`) and the
  backends' clients (`client_context`, `PemFile`); gRPC's credentials are in tls_grpc.py, apart,
  so that the components, which must not import gRPC, can use this module.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layotto.config.foreign import ignored_keys
from layotto.errors import ConfigError

if TYPE_CHECKING:
    from cryptography import x509

    from layotto.config.schema import Obj

log = logging.getLogger("layotto.tls")

#: How PEM text starts: a value holding it is the material itself, not the path of a file.
PEM_MARK = "-----BEGIN"
#: Seconds between two looks at the files of a setting for a rotated certificate.
CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class Pem:
    """A certificate (chain), private key or CA bundle: the file `value` names, or `value` itself
    when it is PEM text. `what` names it in messages, `where` says where it was given (a flag, a
    JSON path, a metadata key)."""

    value: str
    what: str
    where: str

    @property
    def inline(self) -> bool:
        return PEM_MARK in self.value

    def read(self) -> bytes:
        if self.inline:
            return self.value.encode()
        try:
            return Path(self.value).read_bytes()
        except OSError as exc:
            problem = exc.strerror or str(exc)
            raise ConfigError(f"cannot read the {self.what} file {self.value!r}: {problem}", self.where) from None

    def stamp(self) -> tuple[int, int, int] | None:
        """What changes when the file is replaced or rewritten; None for PEM text (or a file gone)."""
        if self.inline:
            return None
        try:
            st = os.stat(self.value)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino


def pem(value: str, what: str, where: str) -> Pem | None:
    """`value` (a path or PEM text) as a Pem; None when it is empty."""
    return Pem(value.strip() if PEM_MARK not in value else value, what, where) if value.strip() else None


@dataclass(frozen=True)
class Material:
    """PEM bytes of a setting, checked: `chain` parses as certificates, `key` as the private key of
    the first, `ca` as certificates. `warnings`: certificates outside their validity period."""

    chain: bytes | None = None
    key: bytes | None = None
    ca: bytes | None = None
    warnings: tuple[str, ...] = ()


# cryptography is imported where certificates are read: a sidecar without TLS never loads it
# (its bindings are several MB of resident memory).


def _certificates(data: bytes, source: Pem) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        found = []
    if not found:
        raise ConfigError(f"the {source.what} {_named(source)} holds no PEM certificate", source.where)
    return found


def _private_key(data: bytes, source: Pem) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"the {source.what} {_named(source)} is encrypted: give it unencrypted (the sidecar has no passphrase)",
            source.where,
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"the {source.what} {_named(source)} holds no PEM private key", source.where) from None


def _named(source: Pem) -> str:
    return "(PEM text)" if source.inline else repr(source.value)


def _public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _validity(cert: x509.Certificate, source: Pem) -> list[str]:
    now = datetime.datetime.now(datetime.UTC)
    named = f"{source.where}: the certificate {cert.subject.rfc4514_string() or '(no subject)'} of {_named(source)}"
    if now > cert.not_valid_after_utc:
        return [f"{named} expired on {cert.not_valid_after_utc:%Y-%m-%d}"]
    if now < cert.not_valid_before_utc:
        return [f"{named} is valid from {cert.not_valid_before_utc:%Y-%m-%d} only"]
    return []


def load_material(cert: Pem | None, key: Pem | None, ca: Pem | None) -> Material:
    """Read and check what a setting names; each problem is a ConfigError naming where it was
    given. A certificate without its key (or the reverse) is one too."""
    if (cert is None) != (key is None):
        given = cert or key
        assert given is not None
        missing = "private key" if cert is not None else "certificate"
        raise ConfigError(f"a {given.what} needs its {missing} too", given.where)
    warnings: list[str] = []
    chain = key_data = ca_data = None
    if cert is not None and key is not None:
        chain, key_data = cert.read(), key.read()
        leaf = _certificates(chain, cert)[0]
        if _public(_private_key(key_data, key).public_key()) != _public(leaf.public_key()):
            raise ConfigError(
                f"the private key {_named(key)} is not the key of the certificate {_named(cert)}", key.where
            )
        warnings += _validity(leaf, cert)
    if ca is not None:
        ca_data = ca.read()
        for authority in _certificates(ca_data, ca):
            warnings += _validity(authority, ca)
    return Material(chain, key_data, ca_data, tuple(warnings))


@dataclass(frozen=True)
class ServerTls:
    """TLS of the API listeners; with `client_ca`, client certificates are required (mTLS)."""

    cert: Pem
    key: Pem
    client_ca: Pem | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def certificates(self) -> Certificates:
        return Certificates(self.cert, self.key, self.client_ca)


@dataclass(frozen=True)
class PeerTls:
    """Sidecar to sidecar invocation over TLS: the other sidecar's certificate must chain to `ca`
    (and name the host dialled, or `server_name`); `cert`/`key` are this sidecar's, presented to
    the sidecars it invokes and served on its internal listener, which then requires theirs."""

    ca: Pem
    cert: Pem | None = None
    key: Pem | None = None
    #: The name the other sidecars' certificates carry, when it is not the host dialled.
    server_name: str = ""

    @property
    def mutual(self) -> bool:
        return self.cert is not None

    def certificates(self) -> Certificates:
        return Certificates(self.cert, self.key, self.ca)


class Certificates:
    """The material of a setting: read when made (a ConfigError then), and read again by
    `refresh` when one of its files changed, at most once per `interval` seconds. A rewrite
    caught half-way (a key not matching its certificate yet) keeps the material in use and is
    read again at the next look. Safe to call from any thread (gRPC asks from its own)."""

    def __init__(
        self,
        cert: Pem | None,
        key: Pem | None,
        ca: Pem | None,
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources = (cert, key, ca)
        self._interval, self._clock = interval, clock
        self._lock = threading.Lock()
        self._stamps = self._stamp()
        self.material = load_material(cert, key, ca)
        self._looked = clock()
        #: Bumped at each change: what was built from older material is to be built again.
        self.generation = 0

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(source.stamp() if source is not None else None for source in self._sources)

    def refresh(self) -> bool:
        """Whether the material changed since the last look (and is the new one now)."""
        now = self._clock()
        with self._lock:
            if now - self._looked < self._interval:
                return False
            self._looked = now
            stamps = self._stamp()
            if stamps == self._stamps:
                return False
            try:
                material = load_material(*self._sources)
            except ConfigError as exc:
                log.warning("a certificate file changed but cannot be used (yet): %s; the previous one stays", exc)
                return False
            self._stamps, self.material = stamps, material
            self.generation += 1
        for warning in material.warnings:
            log.warning("%s", warning)
        log.info("certificates reloaded: %s", ", ".join(s.value for s in self._sources if s and not s.inline))
        return True


# ---- the HTTP listener ----


def http_server_context(certs: Certificates, *, mutual: bool) -> ssl.SSLContext:
    """An ssl context for an HTTP listener; each handshake looks whether the certificates
    changed and, if so, is served by a context of the new ones."""

    def build(material: Material) -> ssl.SSLContext:
        assert material.chain is not None and material.key is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        load_cert_chain(context, material.chain, material.key)
        if mutual:
            assert material.ca is not None
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=material.ca.decode())
        return context

    listening = build(certs.material)
    current = [listening]

    def on_hello(connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, context: ssl.SSLContext) -> None:
        try:
            if certs.refresh():
                current[0] = build(certs.material)
        except Exception:
            log.exception("reloading the listener's certificates failed")
        if connection.context is not current[0]:
            connection.context = current[0]

    listening.sni_callback = on_hello
    return listening


# ---- backends' clients ----


class PemFile:
    """PEM bytes as a file, for libraries that load certificates from files only (ssl's
    load_cert_chain, redis-py): an anonymous in-memory file on Linux (`/proc/self/fd/N`, never
    on disk), else a temporary file only this user can read. Gone at `close` or when collected."""

    def __init__(self, data: bytes) -> None:
        self.path = ""
        self._finalizer: Callable[[], Any]
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            fd = os.memfd_create("layotto-pem", os.MFD_CLOEXEC)
            self._finalizer = weakref.finalize(self, os.close, fd)
            _write_all(fd, data)
            self.path = f"/proc/self/fd/{fd}"
            return
        fd, path = tempfile.mkstemp(prefix="layotto-", suffix=".pem")  # mode 0600
        self._finalizer = weakref.finalize(self, _unlink, path)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        self.path = path

    def close(self) -> None:
        self._finalizer()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def _as_file(data: bytes) -> Iterator[str]:
    holder = PemFile(data)
    try:
        yield holder.path
    finally:
        holder.close()


def load_cert_chain(context: ssl.SSLContext, chain: bytes, key: bytes) -> None:
    """ssl's load_cert_chain from PEM bytes (it reads files only)."""
    with _as_file(chain) as chain_path, _as_file(key) as key_path:
        context.load_cert_chain(chain_path, key_path)


def client_context(material: Material, *, verify: bool = True) -> ssl.SSLContext:
    """The ssl context of a backend client: the server verified against `material.ca` (the
    system's CAs without one) and its host name, unless `verify` is False; `material.chain`
    presented as the client certificate when there is one."""
    context = ssl.create_default_context(cadata=material.ca.decode() if material.ca else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if material.chain is not None and material.key is not None:
        load_cert_chain(context, material.chain, material.key)
    return context


# ---- MOSN's listener `tls_context` ----

#: The keys of MOSN's v2.TLSConfig this runtime acts on, and those it takes and ignores.
_MOSN_TLS_KEYS = ("status", "cert_chain", "private_key", "ca_cert", "verify_client", "require_client_cert")


def from_mosn(context: Obj, warnings: list[str]) -> ServerTls | None:
    """A grpc listener's `tls_context` (MOSN's v2.TLSConfig); None when its `status` is not true.

    As MOSN, `cert_chain`, `private_key` and `ca_cert` are paths or PEM text. `verify_client`
    with a `ca_cert` requires client certificates of that CA: MOSN verifies one only when given
    unless `require_client_cert` is set too, which gRPC cannot do, so one is required either way
    (said in a warning). `require_client_cert` alone (MOSN asks for a certificate and checks
    nothing) and MOSN's other settings (versions, ciphers, SDS, `fall_back` to plaintext) are
    not taken, with a warning."""
    context.check_keys(_MOSN_TLS_KEYS, ignored_keys("mosn", "tls_context"))
    if not context.boolean("status"):
        return None
    where = str(context.at)
    ignored = sorted(k for k in ignored_keys("mosn", "tls_context") if context.get(k) not in ("", False, None, {}))
    if ignored:
        taken = ", ".join(ignored)
        warnings.append(f"{where}: {taken} not taken: gRPC's TLS defaults apply, and no plaintext fallback")

    def source(key: str, what: str) -> Pem | None:
        return pem(context.text(key), what, str(context.where(key)))

    cert, key = source("cert_chain", "certificate"), source("private_key", "private key")
    if cert is None or key is None:
        raise context.at.error('a tls_context with "status": true needs "cert_chain" and "private_key"')
    verify, require = context.boolean("verify_client"), context.boolean("require_client_cert")
    ca = source("ca_cert", "CA certificates") if verify else None
    if verify and ca is None:
        raise context.where("verify_client").error('verify_client needs the "ca_cert" client certificates chain to')
    if verify and not require:
        warnings.append(f"{where}: verify_client: client certificates are required (gRPC verifies none only if given)")
    if require and not verify:
        warnings.append(
            f"{where}: require_client_cert without verify_client verifies nothing; no certificate is asked for"
        )
    return ServerTls(cert, key, ca)
