"""`local` cryption: AES-256-GCM with keys from the component's metadata (or a secret store).

Keys are configured per key id, each with one or more versions, so a key can be rotated:
encryption uses the newest version (the last one listed) and decryption any listed version.

    "metadata": {
      "keys": "{\"orders\": {\"1\": \"<base64 32 bytes>\", \"2\": \"<base64 32 bytes>\"}}",
      "defaultKeyId": "orders"
    }

A key may also be given as its own metadata entry, which is how `secret_ref` injects it:
`key.<keyId>` (version "1") or `key.<keyId>.<version>`.

Cipher text layout: b"L8C1" | len(key id) | key id | len(version) | version | 12-byte nonce |
AES-GCM output (cipher text + 16-byte tag). The header is authenticated data, so changing
the key id or version is detected like any other tampering.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from layotto.components.base import ComponentContext, Metadata
from layotto.components.cryption.base import Cryption, Decrypted, Encrypted
from layotto.errors import ConfigError, InvalidArgumentError

MAGIC = b"L8C1"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
#: Above this size the cipher runs in a worker thread so the event loop keeps serving.
_THREAD_THRESHOLD = 64 * 1024


class LocalCryption(Cryption):
    metadata_keys = ("keys", "key.<keyId>[.<version>]", "defaultKeyId")
    #: key id -> version -> AESGCM; dicts keep the configured order, the last version is newest.
    _keys: dict[str, dict[str, AESGCM]]
    _default: str

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        raw: dict[str, dict[str, str]] = {}
        for key_id, versions in self._parse_keys_entry(metadata).items():
            raw.setdefault(key_id, {}).update(versions)
        for name in metadata:
            if name.lower().startswith("key."):
                key_id, _, version = name[4:].partition(".")
                raw.setdefault(key_id, {})[version or "1"] = metadata.get_str(name)
        if not raw:
            raise ConfigError("no keys configured: set metadata 'keys' or 'key.<keyId>'", f"{metadata.where}.metadata")
        self._keys = {}
        for key_id, versions in raw.items():
            if not key_id or len(key_id.encode()) > 255:
                raise ConfigError(f"key id {key_id!r} must be 1 to 255 bytes", f"{metadata.where}.metadata")
            self._keys[key_id] = {}
            for version, encoded in versions.items():
                if not version or len(version.encode()) > 255:
                    raise ConfigError(f"key {key_id} has an invalid version {version!r}", f"{metadata.where}.metadata")
                self._keys[key_id][version] = AESGCM(self._decode_key(key_id, version, encoded, metadata.where))
        self._default = metadata.get_str("defaultKeyId")
        if self._default and self._default not in self._keys:
            raise ConfigError(f"defaultKeyId {self._default!r} is not a configured key", f"{metadata.where}.metadata")
        if not self._default and len(self._keys) == 1:
            self._default = next(iter(self._keys))

    @staticmethod
    def _parse_keys_entry(metadata: Metadata) -> dict[str, dict[str, str]]:
        if "keys" not in metadata:
            return {}
        value: Any = metadata["keys"]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"'keys' is not JSON: {exc.msg}", f"{metadata.where}.metadata.keys") from None
        if not isinstance(value, dict):
            raise ConfigError("'keys' must map key ids to keys", f"{metadata.where}.metadata.keys")
        parsed: dict[str, dict[str, str]] = {}
        for key_id, versions in value.items():
            if isinstance(versions, str):
                parsed[str(key_id)] = {"1": versions}
            elif isinstance(versions, dict) and versions:
                parsed[str(key_id)] = {str(v): str(k) for v, k in versions.items()}
            else:
                raise ConfigError(
                    f"key {key_id!r} must be a base64 key or a map of version -> base64 key",
                    f"{metadata.where}.metadata.keys",
                )
        return parsed

    @staticmethod
    def _decode_key(key_id: str, version: str, encoded: str, where: str) -> bytes:
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"key {key_id} version {version} is not valid base64", f"{where}.metadata") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"key {key_id} version {version} is {len(key)} bytes; AES-256 needs {KEY_BYTES}", f"{where}.metadata"
            )
        return key

    async def encrypt(self, plain_text: bytes, key_id: str) -> Encrypted:
        key_id = key_id or self._default
        if not key_id:
            raise InvalidArgumentError("key_id is empty and the component has no defaultKeyId")
        versions = self._keys.get(key_id)
        if versions is None:
            raise InvalidArgumentError(f"key {key_id} is not configured in cryption component {self.context.name}")
        version = next(reversed(versions))
        header = _header(key_id, version)
        nonce = os.urandom(NONCE_BYTES)
        sealed = await _run(versions[version].encrypt, nonce, plain_text, header, size=len(plain_text))
        return Encrypted(cipher_text=header + nonce + sealed, key_id=key_id, key_version_id=version)

    async def decrypt(self, cipher_text: bytes) -> Decrypted:
        key_id, version, header_len = _parse_header(cipher_text)
        cipher = self._keys.get(key_id, {}).get(version)
        if cipher is None:
            raise InvalidArgumentError(
                f"cipher text was made with key {key_id} version {version},"
                f" which is not configured in cryption component {self.context.name}"
            )
        nonce = cipher_text[header_len : header_len + NONCE_BYTES]
        sealed = cipher_text[header_len + NONCE_BYTES :]
        try:
            plain = await _run(cipher.decrypt, nonce, sealed, cipher_text[:header_len], size=len(sealed))
        except InvalidTag:
            raise InvalidArgumentError(
                f"cipher text failed authentication with key {key_id} version {version}: it was altered or"
                " not made by this key"
            ) from None
        return Decrypted(plain_text=plain, key_id=key_id, key_version_id=version)


async def _run(fn: Any, nonce: bytes, data: bytes, aad: bytes, *, size: int) -> bytes:
    if size >= _THREAD_THRESHOLD:
        result: bytes = await asyncio.to_thread(fn, nonce, data, aad)
        return result
    direct: bytes = fn(nonce, data, aad)
    return direct


def _header(key_id: str, version: str) -> bytes:
    kid, ver = key_id.encode(), version.encode()
    return MAGIC + bytes([len(kid)]) + kid + bytes([len(ver)]) + ver


def _parse_header(blob: bytes) -> tuple[str, str, int]:
    malformed = InvalidArgumentError("cipher text is malformed: not produced by the local cryption component")
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 2:
        raise malformed
    pos = len(MAGIC)
    kid_len = blob[pos]
    kid = blob[pos + 1 : pos + 1 + kid_len]
    pos += 1 + kid_len
    if pos >= len(blob):
        raise malformed
    ver_len = blob[pos]
    ver = blob[pos + 1 : pos + 1 + ver_len]
    pos += 1 + ver_len
    if len(kid) != kid_len or len(ver) != ver_len or len(blob) < pos + NONCE_BYTES + TAG_BYTES:
        raise malformed
    try:
        return kid.decode(), ver.decode(), pos
    except UnicodeDecodeError:
        raise malformed from None
