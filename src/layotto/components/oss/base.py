"""The object storage component interface (S3-shaped, as upstream's `oss.Oss`).

Put, get, head, exists, delete and list are what every store does. The rest are `OssFeature`s
a store names in `features`; without one, its operations raise UnsupportedError, which the API
answers with UNIMPLEMENTED.
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from layotto.components.base import Component, Feature
from layotto.errors import UnsupportedError


class OssFeature(Feature):
    #: `copy_object` (CopyObject).
    COPY = enum.auto()
    #: `put_tags` / `get_tags` (PutObjectTagging, GetObjectTagging).
    TAGGING = enum.auto()
    #: `append_object` (AppendObject; upstream's AWS store has none).
    APPEND = enum.auto()
    #: Multipart uploads: `create_multipart`, `upload_part`, `upload_part_copy`,
    #: `complete_multipart`, `abort_multipart`, `list_uploads`, `list_parts`.
    MULTIPART = enum.auto()


@dataclass(kw_only=True)
class ObjectHeaders:
    """The header fields an object is stored with, as S3 names them."""

    meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    content_type: str = ""
    cache_control: str = ""
    content_disposition: str = ""
    content_encoding: str = ""
    content_language: str = ""
    expires: int = 0
    storage_class: str = ""


@dataclass(kw_only=True)
class ObjectInfo(ObjectHeaders):
    bucket: str
    key: str
    size: int
    etag: str
    #: Unix seconds.
    last_modified: int
    storage_class: str = "STANDARD"
    parts_count: int = 0


@dataclass(kw_only=True)
class PutOptions(ObjectHeaders):
    """Header fields of a put, a copy target or a multipart upload."""

    @classmethod
    def headers_of(cls, source: object, **more: Any) -> PutOptions:
        """Options with the header fields `source` has (an object's info, a request message),
        and `more`."""
        return cls(**{name: getattr(source, name) for name in HEADER_FIELDS if hasattr(source, name)}, **more)


#: The header fields of PutOptions, named alike in ObjectInfo and in the API's messages.
HEADER_FIELDS = (
    "content_type",
    "cache_control",
    "content_disposition",
    "content_encoding",
    "content_language",
    "expires",
    "storage_class",
)


@dataclass
class ObjectBody:
    info: ObjectInfo
    #: The requested bytes, in chunks.
    chunks: AsyncIterator[bytes]
    #: "bytes first-last/total" for a ranged read, else "".
    content_range: str = ""
    #: Bytes in `chunks`.
    length: int = 0


@dataclass
class Listing:
    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str


@dataclass(frozen=True)
class PartSource:
    """The byte range of an object that UploadPartCopy copies; `size` 0 is to the end."""

    bucket: str
    key: str
    start: int
    size: int


@dataclass
class PartInfo:
    part_number: int
    etag: str
    size: int
    last_modified: int


@dataclass
class UploadInfo:
    upload_id: str
    key: str
    initiated: int


@dataclass
class UploadListing:
    uploads: list[UploadInfo]
    is_truncated: bool
    next_key_marker: str
    next_upload_id_marker: str


@dataclass
class PartListing:
    parts: list[PartInfo]
    is_truncated: bool
    next_part_number_marker: int


def unsupported(what: str, store: str, feature: OssFeature) -> UnsupportedError:
    return UnsupportedError(f"{what} is not supported by the {store} object store", feature)


class ObjectStore(Component):
    features: frozenset[OssFeature] = frozenset()
    kind = "this"

    @abstractmethod
    async def put_object(self, bucket: str, key: str, body: AsyncIterator[bytes], opts: PutOptions) -> ObjectInfo: ...

    @abstractmethod
    async def get_object(self, bucket: str, key: str, start: int, end: int) -> ObjectBody:
        """Bytes [start, end] (inclusive); end < 0 means to the end of the object."""

    @abstractmethod
    async def head_object(self, bucket: str, key: str) -> ObjectInfo: ...

    @abstractmethod
    async def exists(self, bucket: str, key: str) -> bool: ...

    @abstractmethod
    async def delete_object(self, bucket: str, key: str) -> None:
        """Deleting a missing object succeeds, as in S3."""

    async def copy_object(
        self, src_bucket: str, src_key: str, bucket: str, key: str, replace: PutOptions | None, tags: dict[str, str]
    ) -> ObjectInfo:
        """`replace` None keeps the source's metadata; empty `tags` keeps the source's tags."""
        raise unsupported("CopyObject", self.kind, OssFeature.COPY)

    @abstractmethod
    async def list_objects(self, bucket: str, prefix: str, marker: str, max_keys: int, delimiter: str) -> Listing: ...

    async def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        raise unsupported("PutObjectTagging", self.kind, OssFeature.TAGGING)

    async def get_tags(self, bucket: str, key: str) -> dict[str, str]:
        raise unsupported("GetObjectTagging", self.kind, OssFeature.TAGGING)

    async def append_object(
        self, bucket: str, key: str, position: int, body: AsyncIterator[bytes], opts: PutOptions
    ) -> int:
        """Appends at `position` (must be the object's length); returns the next position."""
        raise unsupported("AppendObject", self.kind, OssFeature.APPEND)

    async def create_multipart(self, bucket: str, key: str, opts: PutOptions) -> str:
        raise unsupported("CreateMultipartUpload", self.kind, OssFeature.MULTIPART)

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: AsyncIterator[bytes]
    ) -> PartInfo:
        raise unsupported("UploadPart", self.kind, OssFeature.MULTIPART)

    async def upload_part_copy(
        self, bucket: str, key: str, upload_id: str, part_number: int, source: PartSource
    ) -> PartInfo:
        raise unsupported("UploadPartCopy", self.kind, OssFeature.MULTIPART)

    async def complete_multipart(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> ObjectInfo:
        raise unsupported("CompleteMultipartUpload", self.kind, OssFeature.MULTIPART)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        raise unsupported("AbortMultipartUpload", self.kind, OssFeature.MULTIPART)

    async def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, max_uploads: int
    ) -> UploadListing:
        raise unsupported("ListMultipartUploads", self.kind, OssFeature.MULTIPART)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int, max_parts: int
    ) -> PartListing:
        raise unsupported("ListParts", self.kind, OssFeature.MULTIPART)
