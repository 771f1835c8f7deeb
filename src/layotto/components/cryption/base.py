"""The Cryption component interface."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

from layotto.components.base import Component


@dataclass
class Encrypted:
    cipher_text: bytes
    key_id: str
    key_version_id: str


@dataclass
class Decrypted:
    plain_text: bytes
    key_id: str
    key_version_id: str


class Cryption(Component):
    @abstractmethod
    async def encrypt(self, plain_text: bytes, key_id: str) -> Encrypted:
        """Encrypt with `key_id` (the component's default key when empty). The cipher text
        identifies its key, so decrypt needs nothing else."""

    @abstractmethod
    async def decrypt(self, cipher_text: bytes) -> Decrypted:
        """Raises InvalidArgumentError when the cipher text is malformed, names an unknown key
        or fails authentication (tampered, or not made by this key)."""
