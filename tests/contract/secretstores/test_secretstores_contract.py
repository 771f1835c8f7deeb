"""Every secret store through its block interface (no gRPC): the row's secrets, bulk reads, and
that the declared features are the store's: only a store with MULTIPLE_KEY_VALUES_PER_SECRET
answers a secret with several values; any other answers `{name: value}`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from layotto.components.secretstores.base import SecretStore, SecretStoreFeature
from layotto.errors import NotFoundError
from tests.contract.secretstores.backends import ROWS, Row, remove_data
from tests.support.rows import params


@pytest.fixture(scope="module", autouse=True)
def _data() -> Iterator[None]:
    yield
    remove_data()


@pytest.fixture(params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture
async def store(row: Row) -> AsyncIterator[SecretStore]:
    component = await row.create()
    assert isinstance(component, SecretStore)
    try:
        yield component
    finally:
        await component.close()


async def test_declares_exactly_the_rows_features(store: SecretStore, row: Row) -> None:
    assert store.features == row.features
    assert all(isinstance(f, SecretStoreFeature) for f in store.features)


async def test_get_secret_and_bulk(store: SecretStore, row: Row) -> None:
    every = await store.bulk_get_secret({})
    for name, expected in row.traits.secrets:
        assert await store.get_secret(name, {}) == expected, name
        assert every.get(name) == expected, name


async def test_missing_secret(store: SecretStore, row: Row) -> None:
    if row.traits.missing_fails:
        with pytest.raises(NotFoundError):
            await store.get_secret("no-such-secret", {})
    else:
        assert await store.get_secret("no-such-secret", {}) == {"no-such-secret": ""}


async def test_multiple_key_values_feature(store: SecretStore, row: Row) -> None:
    answers = {name: await store.get_secret(name, {}) for name, _ in row.traits.secrets}
    answers.update(await store.bulk_get_secret({}))
    if SecretStoreFeature.MULTIPLE_KEY_VALUES_PER_SECRET in row.features:
        assert any(len(values) > 1 for values in answers.values()), "the row shows no secret with several values"
    else:
        for name, values in answers.items():
            assert list(values) == [name], f"{name} answered {values} without MULTIPLE_KEY_VALUES_PER_SECRET"
