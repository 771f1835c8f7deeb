"""The object storage extension (ObjectStorageService): store lookup, the checks every bucket,
key and byte range passes before a store sees it, the calls to the store, and the problems
upstream's pkg/grpc/extension/s3 words apart.

Names are checked as S3 checks them, so that what works here works on S3 and no name can reach
outside its bucket on a store that keeps objects as files: a bucket is 3 to 63 lowercase
letters, digits, dots and hyphens, begins and ends with a letter or digit, has no two dots in
a row and is not an IP address; a key is 1 to 1024 bytes of UTF-8 without control
characters, not absolute, and no `..` in it climbs above the bucket. Byte offsets and sizes
are never negative; a range that starts past the object's end is the store's to refuse, as
S3's InvalidRange.

A store's own operations fail with `FAILED`; reading an object's body is its own step
(`GET_FAILED` to open it, `READ_FAILED` while it streams), since upstream words those two
apart. An OS error is told without its file name, so no reply shows the server's paths.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from enum import Enum
from typing import NoReturn, TypeVar

from layotto.components.oss.base import (
    Listing,
    ObjectBody,
    ObjectInfo,
    ObjectStore,
    PartInfo,
    PartListing,
    PartSource,
    PutOptions,
    UploadListing,
)
from layotto.core import names
from layotto.core.problems import Problem, named
from layotto.errors import ComponentError

__all__ = ["MAX_KEY_BYTES", "MAX_PART_NUMBER", "MAX_PART_SIZE", "OssCore", "OssProblem"]

T = TypeVar("T")

#: S3's limits.
MAX_KEY_BYTES = 1024
MAX_PART_NUMBER = 10000
MAX_PART_SIZE = 5 * 1024**3
_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_IP_LIKE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")


class OssProblem(Enum):
    STORE_NOT_FOUND = "object store not found"  # facts: name
    BAD_BUCKET = "the bucket name is refused"  # facts: field, reason
    BAD_KEY = "the object key is refused"  # facts: field, reason
    OUT_OF_RANGE = "a number is out of its range"  # facts: field, value, limit
    FAILED = "object store operation failed"
    GET_FAILED = "opening the object failed"
    READ_FAILED = "reading the object failed"
    UNSUPPORTED = "operation has no meaning for this store"  # facts: rpc, kind


def check_bucket(bucket: str, field: str = "bucket") -> None:
    def refuse(reason: str) -> Problem:
        return Problem(OssProblem.BAD_BUCKET, field=field, reason=reason)

    if not 3 <= len(bucket) <= 63:
        raise refuse(f"is {len(bucket)} characters long; a bucket name is 3 to 63 characters")
    if not _BUCKET_CHARS.fullmatch(bucket):
        odd = next(ch for ch in bucket if not _BUCKET_CHARS.fullmatch(ch))
        raise refuse(f"holds {odd!r}; a bucket name is lowercase letters, digits, dots and hyphens")
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        raise refuse("must begin and end with a letter or digit")
    if ".." in bucket:
        raise refuse("has two dots in a row")
    if _IP_LIKE.fullmatch(bucket):
        raise refuse("is formatted as an IP address")


def check_key(key: str, field: str = "key") -> None:
    def refuse(reason: str) -> Problem:
        return Problem(OssProblem.BAD_KEY, field=field, reason=reason)

    if not key:
        raise refuse("is empty")
    fault = names.text_fault(key, MAX_KEY_BYTES, "a key")
    if fault is not None:
        raise refuse(fault)
    if key.startswith("/"):
        raise refuse("is an absolute path; a key is relative to its bucket")
    if names.depth(key) is None:
        raise refuse("leads outside its bucket: '..' climbs above it")


def _check_object(bucket: str, key: str, bucket_field: str = "bucket", key_field: str = "key") -> None:
    check_bucket(bucket, bucket_field)
    check_key(key, key_field)


def _check_number(field: str, value: int, low: int, high: int | None, limit: str) -> None:
    if value < low or (high is not None and value > high):
        raise Problem(OssProblem.OUT_OF_RANGE, field=field, value=value, limit=limit)


def _check_part_number(part_number: int) -> None:
    _check_number("part_number", part_number, 1, MAX_PART_NUMBER, f"a part number is 1 to {MAX_PART_NUMBER}")


def _plain(exc: BaseException) -> BaseException:
    """`exc` without the file names an OS error carries (the server's paths)."""
    if not isinstance(exc, OSError):
        return exc
    if exc.errno is None:
        return OSError(f"the object store failed ({type(exc).__name__})")
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno))


async def _guarded(call: Awaitable[T], failed: OssProblem) -> T:
    try:
        return await call
    except (ComponentError, OSError) as exc:
        raise Problem(failed, _plain(exc)) from exc


class OssCore:
    def __init__(self, stores: Mapping[str, ObjectStore]) -> None:
        self._stores = stores

    def store(self, name: str) -> ObjectStore:
        return named(self._stores, name, OssProblem.STORE_NOT_FOUND, name=name)

    def _in_bucket(self, name: str, bucket: str) -> ObjectStore:
        """The store `name`, once `bucket` is a valid name (the store is looked up first, as upstream)."""
        store = self.store(name)
        check_bucket(bucket)
        return store

    def _for_object(self, name: str, bucket: str, key: str) -> ObjectStore:
        store = self.store(name)
        _check_object(bucket, key)
        return store

    @staticmethod
    async def _call(call: Awaitable[T]) -> T:
        return await _guarded(call, OssProblem.FAILED)

    # ---- objects ----
    async def put_object(
        self, name: str, bucket: str, key: str, body: AsyncIterator[bytes], opts: PutOptions
    ) -> ObjectInfo:
        store = self._for_object(name, bucket, key)
        return await self._call(store.put_object(bucket, key, body, opts))

    async def get_object(self, name: str, bucket: str, key: str, start: int, end: int) -> ObjectBody:
        """The object's bytes `start`..`end` (inclusive); no end (`end` 0) is to the end."""
        store = self._for_object(name, bucket, key)
        _check_number("start", start, 0, None, "a byte offset is 0 or more")
        _check_number("end", end, 0, None, "a byte offset is 0 or more (0: to the object's end)")
        if end:
            _check_number("end", end, start, None, f"the range's last byte is start ({start}) or more")
        return await _guarded(store.get_object(bucket, key, start, end or -1), OssProblem.GET_FAILED)

    @staticmethod
    async def chunks(body: ObjectBody) -> AsyncIterator[bytes]:
        try:
            async for chunk in body.chunks:
                yield chunk
        except (ComponentError, OSError) as exc:
            raise Problem(OssProblem.READ_FAILED, _plain(exc)) from exc

    async def head_object(self, name: str, bucket: str, key: str) -> ObjectInfo:
        store = self._for_object(name, bucket, key)
        return await self._call(store.head_object(bucket, key))

    async def exists(self, name: str, bucket: str, key: str) -> bool:
        store = self._for_object(name, bucket, key)
        return await self._call(store.exists(bucket, key))

    async def delete_object(self, name: str, bucket: str, key: str) -> None:
        store = self._for_object(name, bucket, key)
        await self._call(store.delete_object(bucket, key))

    async def delete_objects(self, name: str, bucket: str, keys: Sequence[str]) -> None:
        """Every key is checked before the first is deleted: a refused request deletes nothing."""
        store = self._in_bucket(name, bucket)
        for i, key in enumerate(keys):
            check_key(key, f"delete.objects[{i}].key")
        for key in keys:
            await self._call(store.delete_object(bucket, key))

    async def copy_object(
        self,
        name: str,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        replace: PutOptions | None,
        tags: dict[str, str],
    ) -> ObjectInfo:
        store = self.store(name)
        _check_object(src_bucket, src_key, "copy_source.copy_source_bucket", "copy_source.copy_source_key")
        _check_object(bucket, key)
        return await self._call(store.copy_object(src_bucket, src_key, bucket, key, replace, tags))

    async def list_objects(
        self, name: str, bucket: str, prefix: str, marker: str, max_keys: int, delimiter: str
    ) -> Listing:
        store = self._in_bucket(name, bucket)
        return await self._call(store.list_objects(bucket, prefix, marker, max_keys, delimiter))

    async def append_object(
        self, name: str, bucket: str, key: str, position: int, body: AsyncIterator[bytes], opts: PutOptions
    ) -> int:
        store = self._for_object(name, bucket, key)
        _check_number("position", position, 0, None, "a byte offset is 0 or more (the object's length)")
        return await self._call(store.append_object(bucket, key, position, body, opts))

    # ---- tagging ----
    async def put_tags(self, name: str, bucket: str, key: str, tags: dict[str, str]) -> None:
        store = self._for_object(name, bucket, key)
        await self._call(store.put_tags(bucket, key, tags))

    async def get_tags(self, name: str, bucket: str, key: str) -> dict[str, str]:
        store = self._for_object(name, bucket, key)
        return await self._call(store.get_tags(bucket, key))

    # ---- multipart ----
    async def create_multipart(self, name: str, bucket: str, key: str, opts: PutOptions) -> str:
        store = self._for_object(name, bucket, key)
        return await self._call(store.create_multipart(bucket, key, opts))

    async def upload_part(
        self, name: str, bucket: str, key: str, upload_id: str, part_number: int, body: AsyncIterator[bytes]
    ) -> PartInfo:
        store = self._for_object(name, bucket, key)
        _check_part_number(part_number)
        return await self._call(store.upload_part(bucket, key, upload_id, part_number, body))

    async def upload_part_copy(
        self, name: str, bucket: str, key: str, upload_id: str, part_number: int, source: PartSource
    ) -> PartInfo:
        store = self._for_object(name, bucket, key)
        _check_object(source.bucket, source.key, "copy_source.copy_source_bucket", "copy_source.copy_source_key")
        _check_part_number(part_number)
        _check_number("start_position", source.start, 0, None, "a byte offset is 0 or more")
        _check_number(
            "part_size",
            source.size,
            0,
            MAX_PART_SIZE,
            f"a part is 0 (to the object's end) to {MAX_PART_SIZE} bytes (5 GiB, S3's largest part)",
        )
        return await self._call(store.upload_part_copy(bucket, key, upload_id, part_number, source))

    async def complete_multipart(
        self, name: str, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> ObjectInfo:
        store = self._for_object(name, bucket, key)
        return await self._call(store.complete_multipart(bucket, key, upload_id, parts))

    async def abort_multipart(self, name: str, bucket: str, key: str, upload_id: str) -> None:
        store = self._for_object(name, bucket, key)
        await self._call(store.abort_multipart(bucket, key, upload_id))

    async def list_uploads(
        self, name: str, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListing:
        store = self._in_bucket(name, bucket)
        return await self._call(store.list_uploads(bucket, prefix, key_marker, upload_id_marker, max_uploads))

    async def list_parts(
        self, name: str, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartListing:
        store = self._for_object(name, bucket, key)
        return await self._call(store.list_parts(bucket, key, upload_id, part_number_marker, max_parts))

    def unsupported(self, name: str, rpc: str) -> NoReturn:
        """Refuse `rpc`, an operation no store here has a meaning for (ACLs, versions, signed URLs)."""
        raise Problem(OssProblem.UNSUPPORTED, rpc=rpc, kind=self.store(name).kind)
