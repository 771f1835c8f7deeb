"""Every file store through its block interface (no gRPC). File stores have no optional
features: each declares none, and every operation of the block works."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from layotto.components.file.base import FileStore
from layotto.errors import InvalidArgumentError, NotFoundError
from tests.contract.file.backends import ROWS, Row
from tests.support.rows import params


@pytest.fixture(params=params(ROWS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStore]:
    row: Row = request.param
    component = await row.create(tmp_path)
    assert isinstance(component, FileStore)
    try:
        yield component
    finally:
        await component.close()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(store: FileStore, name: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(name, {})])


async def test_declares_no_features(store: FileStore) -> None:
    assert store.features == frozenset()


async def test_put_get_stat_list_delete(store: FileStore) -> None:
    folder = f"d-{uuid.uuid4().hex}"
    await store.put(f"{folder}/a", _chunks(b"hello ", b"world"), {})
    await store.put(f"{folder}/b", _chunks(b"x"), {})
    assert await _read(store, f"{folder}/a") == b"hello world"
    assert (await store.stat(f"{folder}/a", {})).size == 11
    first = await store.list(folder, {}, 1, "")
    assert [f.name for f in first.files] == ["a"] and first.is_truncated
    rest = await store.list(folder, {}, 10, first.marker)
    assert [f.name for f in rest.files] == ["b"] and not rest.is_truncated
    await store.delete(f"{folder}/a", {})
    with pytest.raises(NotFoundError):
        await store.stat(f"{folder}/a", {})
    with pytest.raises(NotFoundError):
        await _read(store, f"{folder}/a")


def _outside(tmp_path: Path) -> list[Path]:
    """What exists in the scratch folder outside the store's root (the row's `files`)."""
    return [p for p in tmp_path.rglob("*") if "files" not in p.relative_to(tmp_path).parts]


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/../x", ".", "/", "a/..", "a\x00b"])
async def test_the_store_confines_names_without_the_core(store: FileStore, tmp_path: Path, name: str) -> None:
    # The block core refuses these first; a store must not rely on it.
    with pytest.raises(InvalidArgumentError):
        await store.put(name, _chunks(b"x"), {})
    with pytest.raises(InvalidArgumentError):
        await _read(store, name)
    with pytest.raises(InvalidArgumentError):
        await store.delete(name, {})
    assert _outside(tmp_path) == []


@pytest.mark.parametrize("mode", [str(0o4755), str(0o2755), str(0o1777), "512", "-1", "9" * 400], ids=lambda m: m[:8])
async def test_the_store_refuses_modes_beyond_permission_bits(store: FileStore, tmp_path: Path, mode: str) -> None:
    with pytest.raises(InvalidArgumentError, match="fileMode"):
        await store.put("f", _chunks(b"x"), {"fileMode": mode})
    with pytest.raises(NotFoundError):
        await store.stat("f", {})
