"""Every cryption component through its block interface (no gRPC): round trips with the default
and a named key, and refusal of tampered or foreign cipher texts. Cryption has no optional
features: each component declares none."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import pytest

from layotto.components.cryption.base import Cryption
from layotto.errors import InvalidArgumentError
from tests.contract.cryption.backends import ROWS, Row
from tests.support.rows import params

KEY_A = base64.b64encode(os.urandom(32)).decode()
KEY_B = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture
async def cryption(row: Row) -> AsyncIterator[Cryption]:
    component = await row.create({"a": KEY_A, "b": KEY_B}, defaultKeyId="a")
    assert isinstance(component, Cryption)
    try:
        yield component
    finally:
        await component.close()


async def test_declares_no_features(cryption: Cryption) -> None:
    assert cryption.features == frozenset()


async def test_round_trip(cryption: Cryption) -> None:
    for key_id, expected in (("", "a"), ("b", "b")):
        sealed = await cryption.encrypt(b"secret \x00", key_id)
        assert sealed.key_id == expected and b"secret" not in sealed.cipher_text
        opened = await cryption.decrypt(sealed.cipher_text)
        assert (opened.plain_text, opened.key_id) == (b"secret \x00", expected)


async def test_tampered_and_foreign_cipher_texts_are_refused(cryption: Cryption, row: Row) -> None:
    sealed = await cryption.encrypt(b"pay alice", "a")
    tampered = bytearray(sealed.cipher_text)
    tampered[-1] ^= 1
    with pytest.raises(InvalidArgumentError):
        await cryption.decrypt(bytes(tampered))
    other = await row.create({"a": KEY_B}, name="other")
    assert isinstance(other, Cryption)
    try:
        with pytest.raises(InvalidArgumentError):
            await other.decrypt(sealed.cipher_text)
    finally:
        await other.close()
