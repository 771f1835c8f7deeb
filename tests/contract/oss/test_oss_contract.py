"""Every object store through its block interface (no gRPC): the required operations, and that
the declared OssFeatures are the store's and work, while the operations of any feature it does
not declare are refused with UnsupportedError."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from layotto.components.oss.base import ObjectStore, OssFeature, PartSource, PutOptions
from layotto.errors import InvalidArgumentError, NotFoundError, UnsupportedError
from tests.contract.oss.backends import ROWS, Row
from tests.support.rows import params


@pytest.fixture(params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture
async def store(row: Row, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    component = await row.create(tmp_path)
    assert isinstance(component, ObjectStore)
    try:
        yield component
    finally:
        await component.close()


@pytest.fixture
def bucket() -> str:
    return f"b-{uuid.uuid4().hex[:12]}"


async def _body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(store: ObjectStore, bucket: str, key: str) -> bytes:
    body = await store.get_object(bucket, key, 0, -1)
    return b"".join([chunk async for chunk in body.chunks])


async def test_declares_exactly_the_rows_features(store: ObjectStore, row: Row) -> None:
    assert store.features == row.features
    assert all(isinstance(f, OssFeature) for f in store.features)


async def test_put_get_head_list_delete(store: ObjectStore, bucket: str) -> None:
    await store.put_object(bucket, "dir/a", _body(b"abc", b"def"), PutOptions(meta={"k": "v"}))
    assert await _read(store, bucket, "dir/a") == b"abcdef"
    info = await store.head_object(bucket, "dir/a")
    assert (info.size, info.meta) == (6, {"k": "v"})
    assert await store.exists(bucket, "dir/a")
    listing = await store.list_objects(bucket, "dir/", "", 100, "")
    assert [o.key for o in listing.objects] == ["dir/a"]
    await store.delete_object(bucket, "dir/a")
    assert not await store.exists(bucket, "dir/a")
    with pytest.raises(NotFoundError):
        await store.head_object(bucket, "dir/a")


async def _copy(store: ObjectStore, bucket: str) -> None:
    await store.put_object(bucket, "src", _body(b"copied"), PutOptions())
    await store.copy_object(bucket, "src", bucket, "dst", None, {})
    assert await _read(store, bucket, "dst") == b"copied"


async def _tagging(store: ObjectStore, bucket: str) -> None:
    await store.put_object(bucket, "t", _body(b"x"), PutOptions())
    await store.put_tags(bucket, "t", {"env": "test"})
    assert await store.get_tags(bucket, "t") == {"env": "test"}


async def _append(store: ObjectStore, bucket: str) -> None:
    position = await store.append_object(bucket, "log", 0, _body(b"one,"), PutOptions())
    await store.append_object(bucket, "log", position, _body(b"two"), PutOptions())
    assert await _read(store, bucket, "log") == b"one,two"


async def _multipart(store: ObjectStore, bucket: str) -> None:
    upload = await store.create_multipart(bucket, "big", PutOptions())
    first = await store.upload_part(bucket, "big", upload, 1, _body(b"a" * 10))
    second = await store.upload_part(bucket, "big", upload, 2, _body(b"b" * 5))
    listed = await store.list_parts(bucket, "big", upload, 0, 100)
    assert [p.part_number for p in listed.parts] == [1, 2]
    await store.complete_multipart(bucket, "big", upload, [(1, first.etag), (2, second.etag)])
    assert await _read(store, bucket, "big") == b"a" * 10 + b"b" * 5
    aborted = await store.create_multipart(bucket, "gone", PutOptions())
    assert [u.upload_id for u in (await store.list_uploads(bucket, "", "", "", 100)).uploads] == [aborted]
    await store.abort_multipart(bucket, "gone", aborted)


#: Each feature's operations, used as a store with the feature uses them.
WORKS: dict[OssFeature, Callable[[ObjectStore, str], Awaitable[None]]] = {
    OssFeature.COPY: _copy,
    OssFeature.TAGGING: _tagging,
    OssFeature.APPEND: _append,
    OssFeature.MULTIPART: _multipart,
}


def _refused(store: ObjectStore, bucket: str, feature: OssFeature) -> list[Awaitable[object]]:
    body, opts = _body(b"x"), PutOptions()
    return {
        OssFeature.COPY: lambda: [store.copy_object(bucket, "a", bucket, "b", None, {})],
        OssFeature.TAGGING: lambda: [store.put_tags(bucket, "a", {}), store.get_tags(bucket, "a")],
        OssFeature.APPEND: lambda: [store.append_object(bucket, "a", 0, body, opts)],
        OssFeature.MULTIPART: lambda: [
            store.create_multipart(bucket, "a", opts),
            store.upload_part(bucket, "a", "u", 1, body),
            store.upload_part_copy(bucket, "a", "u", 1, PartSource(bucket, "b", 0, 1)),
            store.complete_multipart(bucket, "a", "u", []),
            store.abort_multipart(bucket, "a", "u"),
            store.list_uploads(bucket, "", "", "", 10),
            store.list_parts(bucket, "a", "u", 0, 10),
        ],
    }[feature]()


@pytest.mark.parametrize("feature", list(OssFeature), ids=str)
async def test_feature(store: ObjectStore, row: Row, bucket: str, feature: OssFeature) -> None:
    if feature in row.features:
        await WORKS[feature](store, bucket)
        return
    for call in _refused(store, bucket, feature):
        with pytest.raises(UnsupportedError) as refused:
            await call
        assert refused.value.feature == feature


@pytest.mark.parametrize("name", ["bucket\n", "Upper", "ab", "a/b/c", ".uploads", "..", "two..dots", "nul\x00x"])
async def test_the_store_refuses_bad_buckets_without_the_core(store: ObjectStore, tmp_path: Path, name: str) -> None:
    # The core refuses these first, with S3's reasons; a store must not rely on it.
    with pytest.raises(InvalidArgumentError):
        await store.put_object(name, "k", _body(b"x"), PutOptions())
    with pytest.raises(InvalidArgumentError):
        await store.list_objects(name, "", "", 10, "")
    made = await asyncio.to_thread(lambda: [p.name for p in tmp_path.rglob("*")])
    assert sorted(made) == [".tmp", ".uploads", "objects"]


async def test_the_store_refuses_a_negative_start_without_the_core(store: ObjectStore, bucket: str) -> None:
    await store.put_object(bucket, "k", _body(b"0123456789"), PutOptions())
    with pytest.raises(InvalidArgumentError, match="InvalidRange"):
        await store.get_object(bucket, "k", -1, 5)
