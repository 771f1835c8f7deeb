"""`local` object store: buckets are folders under `rootPath`, objects are files.

Layout under the root:
  <bucket>/<quoted key>.data    the object's bytes
  <bucket>/<quoted key>.meta    its JSON sidecar (etag, content headers, user metadata, tags)
  .uploads/<bucket>/<upload id>/ multipart uploads in progress (upload.json, part-NNNNN.*)
  .tmp/                          files being written; renamed into place when complete

Keys are percent-quoted into one file name (no "/" survives quoting), so no key can name a
path outside its bucket and keys "a" and "a/b" can both exist, as in S3. Bucket names are
checked against a strict pattern and cannot start with ".", so they cannot reach the
bookkeeping folders either. Every disk operation runs in a worker thread.

Writes go to .tmp and are renamed into place: a reader sees a whole old or a whole new object,
never half of one. Concurrent writers of one key: the last rename wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

from layotto.components.base import ComponentContext, Metadata
from layotto.components.oss import base as oss
from layotto.errors import InvalidArgumentError, NotFoundError

#: Upstream sends GetObject bodies in messages of up to 1 MiB.
READ_CHUNK = 1024 * 1024
MAX_KEYS = 1000
MAX_PARTS = 10000
#: S3's bucket names (the core checks them too, with reasons): they begin with a letter or
#: digit, so none names the bookkeeping folders, and hold no "/" or control character.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: Longest quoted key that still fits a file name with its suffix (255 bytes on most file systems).
_MAX_QUOTED = 245
_DATA, _META = ".data", ".meta"


def _opts_dict(opts: oss.PutOptions) -> dict[str, Any]:
    return {
        "content_type": opts.content_type,
        "cache_control": opts.cache_control,
        "content_disposition": opts.content_disposition,
        "content_encoding": opts.content_encoding,
        "content_language": opts.content_language,
        "expires": opts.expires,
        "storage_class": opts.storage_class or "STANDARD",
        "meta": dict(opts.meta),
        "tags": dict(opts.tags),
    }


def _info(bucket: str, key: str, doc: dict[str, Any]) -> oss.ObjectInfo:
    return oss.ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(doc.get("size", 0)),
        etag=str(doc.get("etag", "")),
        last_modified=int(doc.get("last_modified", 0)),
        content_type=str(doc.get("content_type", "")),
        cache_control=str(doc.get("cache_control", "")),
        content_disposition=str(doc.get("content_disposition", "")),
        content_encoding=str(doc.get("content_encoding", "")),
        content_language=str(doc.get("content_language", "")),
        expires=int(doc.get("expires", 0)),
        storage_class=str(doc.get("storage_class", "STANDARD")),
        meta=dict(doc.get("meta", {})),
        tags=dict(doc.get("tags", {})),
        parts_count=int(doc.get("parts_count", 0)),
    )


class _Writer:
    """A file being written in .tmp, hashed as it goes; renamed into place by `commit`."""

    def __init__(self, tmp_dir: Path) -> None:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="w-")
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.md5 = hashlib.md5()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)

    def commit(self, target: Path) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def _write_json(tmp_dir: Path, target: Path, doc: dict[str, Any]) -> None:
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="m-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            doc: dict[str, Any] = json.load(f)
            return doc
    except FileNotFoundError:
        return None


class LocalObjectStore(oss.ObjectStore):
    metadata_keys = ("rootPath",)
    features = frozenset({oss.OssFeature.COPY, oss.OssFeature.TAGGING, oss.OssFeature.APPEND, oss.OssFeature.MULTIPART})
    kind = "local"
    root: Path

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        default = Path(os.environ.get("LAYOTTO_DATA_DIR", Path.home() / ".layotto")) / "oss" / context.name
        root = Path(metadata.get_str("rootPath") or default)

        def prepare() -> Path:
            resolved = root.resolve()
            for sub in (resolved, resolved / ".tmp", resolved / ".uploads"):
                sub.mkdir(parents=True, exist_ok=True)
            # Left by writes a crash interrupted; recent ones may belong to a live sidecar.
            stale = time.time() - 3600
            for leftover in (resolved / ".tmp").iterdir():
                with contextlib.suppress(OSError):
                    if leftover.stat().st_mtime < stale:
                        leftover.unlink()
            return resolved

        self.root = await asyncio.to_thread(prepare)
        self._tmp = self.root / ".tmp"
        # Weak values: a key's lock lives while some call holds or awaits it, then goes away.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    async def ping(self) -> None:
        if not await asyncio.to_thread(os.access, self.root, os.W_OK):
            raise OSError(f"object store root {self.root} is not writable")

    # ---- names ----
    def _bucket(self, bucket: str) -> Path:
        # fullmatch: `$` in a pattern also matches before a final newline.
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise InvalidArgumentError(f"invalid bucket name {bucket[:63]!r}")
        return self.root / bucket

    def _paths(self, bucket: str, key: str) -> tuple[Path, Path]:
        if not key:
            raise InvalidArgumentError("object key is empty")
        quoted = quote(key, safe="")
        if len(quoted) > _MAX_QUOTED:
            raise InvalidArgumentError(f"object key is too long for the local store ({len(quoted)} bytes quoted)")
        folder = self._bucket(bucket)
        return folder / (quoted + _DATA), folder / (quoted + _META)

    def _upload_dir(self, bucket: str, upload_id: str) -> Path:
        self._bucket(bucket)
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise NotFoundError(f"NoSuchUpload: upload {upload_id!r} does not exist")
        return self.root / ".uploads" / bucket / upload_id

    def _lock(self, bucket: str, key: str) -> asyncio.Lock:
        lock = self._locks.get((bucket, key))
        if lock is None:
            lock = self._locks[(bucket, key)] = asyncio.Lock()
        return lock

    async def _stream_to(self, body: AsyncIterator[bytes]) -> _Writer:
        writer = await asyncio.to_thread(_Writer, self._tmp)
        try:
            async for chunk in body:
                if chunk:
                    await asyncio.to_thread(writer.write, chunk)
        except BaseException:
            await asyncio.to_thread(writer.discard)
            raise
        return writer

    async def _meta(self, bucket: str, key: str) -> dict[str, Any]:
        _, meta_path = self._paths(bucket, key)
        doc = await asyncio.to_thread(_read_json, meta_path)
        if doc is None:
            raise NotFoundError(f"NoSuchKey: object {bucket}/{key} does not exist")
        return doc

    async def _commit_object(self, bucket: str, key: str, writer: _Writer, doc: dict[str, Any]) -> oss.ObjectInfo:
        data_path, meta_path = self._paths(bucket, key)
        doc.update(key=key, size=writer.size, last_modified=int(time.time()))
        async with self._lock(bucket, key):
            try:
                await asyncio.to_thread(writer.commit, data_path)
            except BaseException:
                await asyncio.to_thread(writer.discard)
                raise
            await asyncio.to_thread(_write_json, self._tmp, meta_path, doc)
        return _info(bucket, key, doc)

    # ---- objects ----
    async def put_object(
        self, bucket: str, key: str, body: AsyncIterator[bytes], opts: oss.PutOptions
    ) -> oss.ObjectInfo:
        self._paths(bucket, key)
        writer = await self._stream_to(body)
        doc = _opts_dict(opts)
        doc["etag"] = writer.md5.hexdigest()
        return await self._commit_object(bucket, key, writer, doc)

    async def get_object(self, bucket: str, key: str, start: int, end: int) -> oss.ObjectBody:
        if start < 0:
            raise InvalidArgumentError(f"InvalidRange: the range starts at {start}, before the object")
        data_path, _ = self._paths(bucket, key)
        doc = await self._meta(bucket, key)
        try:
            handle = await asyncio.to_thread(data_path.open, "rb")
        except FileNotFoundError:
            raise NotFoundError(f"NoSuchKey: object {bucket}/{key} does not exist") from None
        try:
            total = (await asyncio.to_thread(os.fstat, handle.fileno())).st_size
            doc["size"] = total
            ranged = start > 0 or end >= 0
            last = total - 1 if end < 0 or end >= total else end
            if ranged and (start >= total or start > last):
                asked = f"{start}-{end}" if end >= 0 else f"{start}-"
                raise InvalidArgumentError(f"InvalidRange: bytes {asked} are outside the object ({total} bytes)")
            if start:
                await asyncio.to_thread(handle.seek, start)
        except BaseException:
            handle.close()
            raise
        length = last - start + 1 if total else 0

        async def chunks() -> AsyncIterator[bytes]:
            remaining = length
            try:
                while remaining > 0:
                    chunk = await asyncio.to_thread(handle.read, min(READ_CHUNK, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    yield chunk
            finally:
                handle.close()

        content_range = f"bytes {start}-{last}/{total}" if ranged else ""
        return oss.ObjectBody(info=_info(bucket, key, doc), chunks=chunks(), content_range=content_range, length=length)

    async def head_object(self, bucket: str, key: str) -> oss.ObjectInfo:
        return _info(bucket, key, await self._meta(bucket, key))

    async def exists(self, bucket: str, key: str) -> bool:
        _, meta_path = self._paths(bucket, key)
        return await asyncio.to_thread(meta_path.exists)

    async def delete_object(self, bucket: str, key: str) -> None:
        data_path, meta_path = self._paths(bucket, key)

        def remove() -> None:
            # The sidecar first: once it is gone the object is gone for every reader.
            meta_path.unlink(missing_ok=True)
            data_path.unlink(missing_ok=True)

        async with self._lock(bucket, key):
            await asyncio.to_thread(remove)

    async def copy_object(
        self, src_bucket: str, src_key: str, bucket: str, key: str, replace: oss.PutOptions | None, tags: dict[str, str]
    ) -> oss.ObjectInfo:
        source = await self.get_object(src_bucket, src_key, 0, -1)
        self._paths(bucket, key)
        writer = await self._stream_to(source.chunks)
        doc = _opts_dict(replace) if replace is not None else _opts_dict(_options_of(source.info))
        doc["tags"] = dict(tags) if tags else dict(source.info.tags)
        doc["etag"] = writer.md5.hexdigest()
        return await self._commit_object(bucket, key, writer, doc)

    async def list_objects(self, bucket: str, prefix: str, marker: str, max_keys: int, delimiter: str) -> oss.Listing:
        folder = self._bucket(bucket)
        limit = MAX_KEYS if max_keys <= 0 else min(max_keys, MAX_KEYS)

        def scan() -> oss.Listing:
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                names = []
            keys = sorted(unquote(n[: -len(_META)]) for n in names if n.endswith(_META))
            objects: list[oss.ObjectInfo] = []
            prefixes: list[str] = []
            last = ""
            truncated = False
            for key in keys:
                if not key.startswith(prefix) or (marker and key <= marker):
                    continue
                if marker and delimiter and marker.endswith(delimiter) and key.startswith(marker):
                    continue
                rest = key[len(prefix) :]
                cut = rest.find(delimiter) if delimiter else -1
                if cut >= 0:
                    common = prefix + rest[: cut + len(delimiter)]
                    if prefixes and prefixes[-1] == common:
                        continue
                    if len(objects) + len(prefixes) == limit:
                        truncated = True
                        break
                    prefixes.append(common)
                    last = common
                    continue
                if len(objects) + len(prefixes) == limit:
                    truncated = True
                    break
                doc = _read_json(folder / (quote(key, safe="") + _META))
                if doc is None:
                    continue  # deleted while listing
                objects.append(_info(bucket, key, doc))
                last = key
            return oss.Listing(objects, prefixes, truncated, last if truncated else "")

        return await asyncio.to_thread(scan)

    async def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        _, meta_path = self._paths(bucket, key)
        async with self._lock(bucket, key):
            doc = await self._meta(bucket, key)
            doc["tags"] = dict(tags)
            await asyncio.to_thread(_write_json, self._tmp, meta_path, doc)

    async def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        return dict((await self._meta(bucket, key)).get("tags", {}))

    async def append_object(
        self, bucket: str, key: str, position: int, body: AsyncIterator[bytes], opts: oss.PutOptions
    ) -> int:
        data_path, meta_path = self._paths(bucket, key)
        async with self._lock(bucket, key):
            doc = await asyncio.to_thread(_read_json, meta_path)
            size = int(doc["size"]) if doc is not None else 0
            if position != size:
                raise InvalidArgumentError(
                    f"PositionNotEqualToLength: append position {position} is not the object's length {size}"
                )
            if doc is None:
                doc = _opts_dict(opts)
                doc.update(key=key, etag="", parts_count=0)
            await asyncio.to_thread(data_path.parent.mkdir, parents=True, exist_ok=True)
            handle = await asyncio.to_thread(data_path.open, "ab")
            digest = hashlib.md5(str(doc.get("etag", "")).encode())
            try:
                await asyncio.to_thread(handle.truncate, size)  # drop bytes of an append that failed midway
                async for chunk in body:
                    if chunk:
                        await asyncio.to_thread(handle.write, chunk)
                        digest.update(chunk)
                        size += len(chunk)
                await asyncio.to_thread(handle.flush)
            finally:
                await asyncio.to_thread(handle.close)
            doc.update(size=size, etag=digest.hexdigest(), last_modified=int(time.time()))
            await asyncio.to_thread(_write_json, self._tmp, meta_path, doc)
        return size

    # ---- multipart ----
    async def create_multipart(self, bucket: str, key: str, opts: oss.PutOptions) -> str:
        self._paths(bucket, key)
        upload_id = uuid.uuid4().hex
        folder = self._upload_dir(bucket, upload_id)
        doc = {"key": key, "initiated": int(time.time()), "opts": _opts_dict(opts)}
        await asyncio.to_thread(folder.mkdir, parents=True)
        await asyncio.to_thread(_write_json, self._tmp, folder / "upload.json", doc)
        return upload_id

    async def _upload(self, bucket: str, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        folder = self._upload_dir(bucket, upload_id)
        doc = await asyncio.to_thread(_read_json, folder / "upload.json")
        if doc is None or doc.get("key") != key:
            raise NotFoundError(f"NoSuchUpload: upload {upload_id} of {bucket}/{key} does not exist")
        return folder, doc

    @staticmethod
    def _check_part(part_number: int) -> None:
        if not 1 <= part_number <= MAX_PARTS:
            raise InvalidArgumentError(f"part number {part_number} is not between 1 and {MAX_PARTS}")

    async def _save_part(self, folder: Path, part_number: int, writer: _Writer) -> oss.PartInfo:
        part = oss.PartInfo(part_number, writer.md5.hexdigest(), writer.size, int(time.time()))
        try:
            await asyncio.to_thread(writer.commit, folder / f"part-{part_number:05d}.data")
        except BaseException:
            await asyncio.to_thread(writer.discard)
            raise
        record = {"etag": part.etag, "size": part.size, "last_modified": part.last_modified}
        await asyncio.to_thread(_write_json, self._tmp, folder / f"part-{part_number:05d}.json", record)
        return part

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: AsyncIterator[bytes]
    ) -> oss.PartInfo:
        self._check_part(part_number)
        folder, _ = await self._upload(bucket, key, upload_id)
        writer = await self._stream_to(body)
        return await self._save_part(folder, part_number, writer)

    async def upload_part_copy(
        self, bucket: str, key: str, upload_id: str, part_number: int, source: oss.PartSource
    ) -> oss.PartInfo:
        self._check_part(part_number)
        folder, _ = await self._upload(bucket, key, upload_id)
        end = source.start + source.size - 1 if source.size > 0 else -1
        copied = await self.get_object(source.bucket, source.key, source.start, end)
        writer = await self._stream_to(copied.chunks)
        return await self._save_part(folder, part_number, writer)

    def _parts(self, folder: Path) -> list[oss.PartInfo]:
        parts = []
        for name in sorted(os.listdir(folder)):
            if name.startswith("part-") and name.endswith(".json"):
                doc = _read_json(folder / name)
                if doc is not None:
                    parts.append(
                        oss.PartInfo(int(name[5:10]), doc["etag"], int(doc["size"]), int(doc["last_modified"]))
                    )
        return parts

    async def complete_multipart(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> oss.ObjectInfo:
        folder, upload = await self._upload(bucket, key, upload_id)
        if not parts:
            raise InvalidArgumentError("MalformedXML: the upload must name at least one part")
        numbers = [n for n, _ in parts]
        if numbers != sorted(set(numbers)):
            raise InvalidArgumentError("InvalidPartOrder: parts must be listed in ascending order, once each")
        stored = {p.part_number: p for p in await asyncio.to_thread(self._parts, folder)}
        for number, etag in parts:
            have = stored.get(number)
            if have is None or (etag and etag.strip('"') != have.etag):
                raise InvalidArgumentError(f"InvalidPart: part {number} was not uploaded or its etag does not match")

        def concatenate() -> _Writer:
            writer = _Writer(self._tmp)
            try:
                for number, _ in parts:
                    with (folder / f"part-{number:05d}.data").open("rb") as src:
                        while chunk := src.read(READ_CHUNK):
                            writer.write(chunk)
            except BaseException:
                writer.discard()
                raise
            return writer

        writer = await asyncio.to_thread(concatenate)
        combined = hashlib.md5(b"".join(bytes.fromhex(stored[n].etag) for n, _ in parts))
        doc = dict(upload["opts"])
        doc.update(etag=f"{combined.hexdigest()}-{len(parts)}", parts_count=len(parts))
        info = await self._commit_object(bucket, key, writer, doc)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return info

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        folder, _ = await self._upload(bucket, key, upload_id)
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> oss.UploadListing:
        self._bucket(bucket)
        folder = self.root / ".uploads" / bucket
        limit = MAX_KEYS if max_uploads <= 0 else min(max_uploads, MAX_KEYS)

        def scan() -> oss.UploadListing:
            try:
                ids = os.listdir(folder)
            except FileNotFoundError:
                ids = []
            found: list[oss.UploadInfo] = []
            for upload_id in ids:
                doc = _read_json(folder / upload_id / "upload.json")
                if doc is not None and str(doc["key"]).startswith(prefix):
                    found.append(oss.UploadInfo(upload_id, str(doc["key"]), int(doc["initiated"])))
            found.sort(key=lambda u: (u.key, u.initiated, u.upload_id))
            after = [u for u in found if _after(u, key_marker, upload_id_marker)]
            page = after[:limit]
            truncated = len(after) > limit
            last = page[-1] if truncated and page else None
            return oss.UploadListing(page, truncated, last.key if last else "", last.upload_id if last else "")

        return await asyncio.to_thread(scan)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> oss.PartListing:
        folder, _ = await self._upload(bucket, key, upload_id)
        limit = MAX_KEYS if max_parts <= 0 else min(max_parts, MAX_KEYS)
        parts = [p for p in await asyncio.to_thread(self._parts, folder) if p.part_number > part_number_marker]
        page = parts[:limit]
        truncated = len(parts) > limit
        return oss.PartListing(page, truncated, page[-1].part_number if truncated and page else 0)


def _after(upload: oss.UploadInfo, key_marker: str, upload_id_marker: str) -> bool:
    if not key_marker:
        return True
    if upload.key != key_marker:
        return upload.key > key_marker
    # Within the marker key, S3 continues after the given upload id (or skips the key without one).
    return bool(upload_id_marker) and upload.upload_id > upload_id_marker


def _options_of(info: oss.ObjectInfo) -> oss.PutOptions:
    return oss.PutOptions.headers_of(info, meta=dict(info.meta))
