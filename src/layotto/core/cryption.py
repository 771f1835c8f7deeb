"""The Cryption extension: component lookup and calls to the component."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from layotto.components.cryption.base import Cryption, Decrypted, Encrypted
from layotto.core.problems import guarded, named

__all__ = ["CryptionCore", "CryptionProblem"]


class CryptionProblem(Enum):
    NOT_FOUND = "cryption component not found"  # facts: kind, name
    ENCRYPT_FAILED = "encrypt failed"  # facts: name
    DECRYPT_FAILED = "decrypt failed"  # facts: name


class CryptionCore:
    KIND = "cryption"

    def __init__(self, components: Mapping[str, Cryption]) -> None:
        self._components = components

    def _component(self, name: str) -> Cryption:
        return named(self._components, name, CryptionProblem.NOT_FOUND, kind=self.KIND, name=name)

    async def encrypt(self, name: str, plain_text: bytes, key_id: str) -> Encrypted:
        """With `key_id`, or the component's default key when empty."""
        call = self._component(name).encrypt(plain_text, key_id)
        return await guarded(call, CryptionProblem.ENCRYPT_FAILED, name=name)

    async def decrypt(self, name: str, cipher_text: bytes) -> Decrypted:
        return await guarded(self._component(name).decrypt(cipher_text), CryptionProblem.DECRYPT_FAILED, name=name)
