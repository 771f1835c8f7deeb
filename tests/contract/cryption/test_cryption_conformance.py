"""CryptionService through the gRPC server with the `local` (AES-256-GCM) component."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2 as pb
from layotto_proto.spec.proto.extension.v1.cryption import cryption_pb2_grpc
from tests.contract.cryption.backends import ROWS
from tests.support.sidecar import running_sidecar

KEY_A1 = base64.b64encode(os.urandom(32)).decode()
KEY_A2 = base64.b64encode(os.urandom(32)).decode()
KEY_B = base64.b64encode(os.urandom(32)).decode()
OTHER = base64.b64encode(os.urandom(32)).decode()


def _entry(keys: dict[str, Any], **extra: str) -> dict[str, Any]:
    # The suite's configs hold several components of one row: `local`, the only cryption type.
    return ROWS[0].entry(keys, **extra)


@pytest.fixture
async def stub() -> AsyncIterator[cryption_pb2_grpc.CryptionServiceStub]:
    config = {
        "cryption": {
            # "orders" was rotated: version 1 still decrypts, version 2 encrypts.
            "kms": _entry({"orders": {"1": KEY_A1, "2": KEY_A2}, "users": KEY_B}, defaultKeyId="users"),
            "old": _entry({"orders": {"1": KEY_A1}}),
            # Same key ids, different key material.
            "impostor": _entry({"orders": {"2": OTHER}, "users": OTHER}),
        }
    }
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield cryption_pb2_grpc.CryptionServiceStub(channel)


async def _encrypt(
    stub: cryption_pb2_grpc.CryptionServiceStub, data: bytes, key: str = "", component: str = "kms"
) -> pb.EncryptResponse:
    return await stub.Encrypt(pb.EncryptRequest(component_name=component, plain_text=data, key_id=key))


async def test_round_trip_names_key_and_version(stub: cryption_pb2_grpc.CryptionServiceStub) -> None:
    plain = f"card 4111-{uuid.uuid4()}".encode()
    enc = await _encrypt(stub, plain, "orders")
    assert (enc.key_id, enc.key_version_id) == ("orders", "2")
    assert plain not in enc.cipher_text and enc.request_id
    dec = await stub.Decrypt(pb.DecryptRequest(component_name="kms", cipher_text=enc.cipher_text))
    assert dec.plain_text == plain
    assert (dec.key_id, dec.key_version_id) == ("orders", "2")
    # Fresh nonce each time: equal plain texts give different cipher texts.
    assert (await _encrypt(stub, plain, "orders")).cipher_text != enc.cipher_text


async def test_default_key_empty_and_large_payloads(stub: cryption_pb2_grpc.CryptionServiceStub) -> None:
    for plain in (b"", os.urandom(300_000)):
        enc = await _encrypt(stub, plain)
        assert enc.key_id == "users"
        dec = await stub.Decrypt(pb.DecryptRequest(component_name="kms", cipher_text=enc.cipher_text))
        assert dec.plain_text == plain


async def test_old_key_version_still_decrypts(stub: cryption_pb2_grpc.CryptionServiceStub) -> None:
    enc = await _encrypt(stub, b"before rotation", "orders", component="old")
    assert enc.key_version_id == "1"
    dec = await stub.Decrypt(pb.DecryptRequest(component_name="kms", cipher_text=enc.cipher_text))
    assert (dec.plain_text, dec.key_version_id) == (b"before rotation", "1")


async def test_wrong_key_is_refused(stub: cryption_pb2_grpc.CryptionServiceStub) -> None:
    enc = await _encrypt(stub, b"secret", "orders")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Decrypt(pb.DecryptRequest(component_name="impostor", cipher_text=enc.cipher_text))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "failed authentication with key orders version 2" in str(err.value.details())
    # A version the component does not hold.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Decrypt(pb.DecryptRequest(component_name="old", cipher_text=enc.cipher_text))
    assert "key orders version 2, which is not configured" in str(err.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _encrypt(stub, b"x", "nope")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "key nope is not configured in cryption component kms" in str(err.value.details())


@pytest.mark.parametrize("position", [0, 6, -20, -1])
async def test_tampering_is_detected(stub: cryption_pb2_grpc.CryptionServiceStub, position: int) -> None:
    enc = await _encrypt(stub, b"pay 10 EUR to alice", "orders")
    tampered = bytearray(enc.cipher_text)
    tampered[position] ^= 0x01
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Decrypt(pb.DecryptRequest(component_name="kms", cipher_text=bytes(tampered)))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    details = str(err.value.details())
    assert "malformed" in details or "failed authentication" in details or "not configured" in details


async def test_garbage_and_truncated_cipher_text(stub: cryption_pb2_grpc.CryptionServiceStub) -> None:
    enc = await _encrypt(stub, b"hello", "orders")
    for blob in (b"", b"not a cipher text", enc.cipher_text[:20]):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Decrypt(pb.DecryptRequest(component_name="kms", cipher_text=blob))
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "malformed" in str(err.value.details())


async def test_unknown_component(stub: cryption_pb2_grpc.CryptionServiceStub) -> None:
    for call in (
        stub.Encrypt(pb.EncryptRequest(component_name="nope", plain_text=b"x")),
        stub.Decrypt(pb.DecryptRequest(component_name="nope", cipher_text=b"x")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "component not found. kind: cryption , name: nope"


async def test_key_from_secret_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    env = f"LAYOTTO_TEST_KEY_{uuid.uuid4().hex.upper()}"
    monkeypatch.setenv(env, KEY_B)
    config = {
        # A local.env store exposes only what its metadata names.
        "secret_store": {"env": {"type": "local.env", "metadata": {"allowedSecrets": env}}},
        "cryption": {
            "vault": {
                "type": "local",
                "metadata": {},
                "secret_ref": [{"store_name": "env", "key": env, "sub_key": env, "inject_as": "key.users"}],
            },
            "plain": _entry({"users": KEY_B}),
        },
    }
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        stub = cryption_pb2_grpc.CryptionServiceStub(channel)
        enc = await stub.Encrypt(pb.EncryptRequest(component_name="vault", plain_text=b"from env"))
        assert (enc.key_id, enc.key_version_id) == ("users", "1")
        dec = await stub.Decrypt(pb.DecryptRequest(component_name="plain", cipher_text=enc.cipher_text))
        assert dec.plain_text == b"from env"


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({}, "no keys configured"),
        ({"keys": {"k": "c2hvcnQ="}}, "AES-256 needs 32"),
        ({"keys": "{not json"}, "'keys' is not JSON"),
        ({"keys": {"k": "!!!"}}, "not valid base64"),
        ({"keys": {"k": KEY_B}, "defaultKeyId": "x"}, "defaultKeyId 'x' is not a configured key"),
    ],
)
async def test_bad_config_fails_startup(metadata: dict[str, Any], problem: str) -> None:
    from layotto.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        async with running_sidecar({"cryption": {"bad": {"type": "local", "metadata": metadata}}}):
            pass
