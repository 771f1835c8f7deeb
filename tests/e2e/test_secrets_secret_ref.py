"""Secret references end to end: a component's metadata value comes from a secret store.

A redis-server of our own requires a password; the redis configuration store gets
`redisPassword` only through `secret_ref` from a local.file store, and works.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto.components.secretstores.base import SecretStore, resolve_secret
from layotto.errors import ConfigError, NotFoundError
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.services import reachable, require_binary
from tests.support.sidecar import free_port, running_sidecar

PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="layotto-secret-ref-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def protected_redis(workdir: Path) -> Iterator[int]:
    require_binary("redis-server")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", PASSWORD]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    deadline = time.monotonic() + 10
    while not reachable("127.0.0.1", port, timeout=0.2):
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait()


def _config(secrets_file: Path, port: int, ref: dict[str, str]) -> dict[str, Any]:
    return {
        "app": {"app_id": f"app-{uuid.uuid4().hex[:8]}"},
        "secret_store": {
            "vault": {"type": "local.file", "metadata": {"secretsFile": str(secrets_file), "multiValued": "true"}}
        },
        "config_store": {
            "cfg": {
                "type": "redis",
                "metadata": {"redisHost": f"127.0.0.1:{port}", "maxRetries": "0"},
                "secret_ref": [ref],
            }
        },
    }


async def test_redis_password_injected_from_local_file(workdir: Path, protected_redis: int) -> None:
    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps({"redis": {"password": PASSWORD}}))
    ref = {"store_name": "vault", "key": "redis", "sub_key": "password", "inject_as": "redisPassword"}
    async with running_sidecar(_config(secrets_file, protected_redis, ref)) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            item = pb.ConfigurationItem(key="k", content="v")
            await stub.SaveConfiguration(pb.SaveConfigurationRequest(store_name="cfg", items=[item]))
            reply = await stub.GetConfiguration(pb.GetConfigurationRequest(store_name="cfg", keys=["k"]))
            assert [i.content for i in reply.items] == ["v"]
            # The secret is also readable through the API, from the same store.
            secret = await stub.GetSecret(pb.GetSecretRequest(store_name="vault", key="redis"))
            assert dict(secret.data) == {"password": PASSWORD}


async def test_without_the_secret_the_component_cannot_connect(workdir: Path, protected_redis: int) -> None:
    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps({"redis": {"password": "wrong"}}))
    ref = {"store_name": "vault", "key": "redis", "sub_key": "password", "inject_as": "redisPassword"}
    with pytest.raises(ConfigError):
        async with running_sidecar(_config(secrets_file, protected_redis, ref)):
            pass


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ({"store_name": "absent", "key": "redis", "sub_key": "password"}, "unknown secret store 'absent'"),
        ({"store_name": "vault", "key": "redis", "sub_key": "nope"}, "has no entry 'nope'"),
        ({"store_name": "vault", "key": "missing", "sub_key": "password"}, "secret missing not found"),
    ],
)
async def test_bad_reference_fails_startup_clearly(workdir: Path, ref: dict[str, str], problem: str) -> None:
    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps({"redis": {"password": PASSWORD}}))
    with pytest.raises(ConfigError) as err:
        async with running_sidecar(_config(secrets_file, free_port(), ref)):
            pass
    assert problem in str(err.value)
    assert "cfg" in str(err.value)


async def test_resolve_secret_is_reusable(workdir: Path) -> None:
    """The resolver the Dapr loader can call for `secretKeyRef {name, key}`."""
    from layotto.components.base import ComponentContext, Metadata
    from layotto.components.secretstores.localfile import LocalFileSecretStore

    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps({"db": {"user": "u", "password": "p"}, "token": "t"}))
    store: SecretStore = LocalFileSecretStore()
    await store.init(
        Metadata({"secretsFile": str(secrets_file), "multiValued": "true"}), ComponentContext("vault", "secretstores")
    )
    assert await resolve_secret(store, "db", "password") == "p"
    assert await resolve_secret(store, "token") == "t"
    with pytest.raises(NotFoundError):
        await resolve_secret(store, "db", "nope")
    # A rotated file is read again without a restart.
    secrets_file.write_text(json.dumps({"token": "rotated"}))
    assert await resolve_secret(store, "token") == "rotated"
