"""The object storage extension (ObjectStorageService): store lookup, calls to the store, and
the problems upstream's pkg/grpc/extension/s3 words apart.

A store's own operations are called through `call`, which turns a component failure into
`FAILED`; reading an object's body is its own step (`GET_FAILED` to open it, `READ_FAILED`
while it streams), since upstream words those two apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from enum import Enum
from typing import NoReturn, TypeVar

from layotto.components.oss.base import ObjectBody, ObjectStore
from layotto.core.problems import Problem, guarded, named
from layotto.errors import ComponentError

__all__ = ["OssCore", "OssProblem"]

T = TypeVar("T")


class OssProblem(Enum):
    STORE_NOT_FOUND = "object store not found"  # facts: name
    FAILED = "object store operation failed"
    GET_FAILED = "opening the object failed"
    READ_FAILED = "reading the object failed"
    UNSUPPORTED = "operation has no meaning for this store"  # facts: rpc, kind


class OssCore:
    def __init__(self, stores: Mapping[str, ObjectStore]) -> None:
        self._stores = stores

    def store(self, name: str) -> ObjectStore:
        return named(self._stores, name, OssProblem.STORE_NOT_FOUND, name=name)

    async def call(self, call: Awaitable[T]) -> T:
        """Await one of a store's operations."""
        return await guarded(call, OssProblem.FAILED)

    async def get_object(self, name: str, bucket: str, key: str, start: int, end: int) -> ObjectBody:
        """The object's bytes `start`..`end` (inclusive); no end (`end` <= 0) is to the end."""
        store = self.store(name)
        if end <= 0 and start >= 0:
            end = -1
        return await guarded(store.get_object(bucket, key, start, end), OssProblem.GET_FAILED)

    @staticmethod
    async def chunks(body: ObjectBody) -> AsyncIterator[bytes]:
        try:
            async for chunk in body.chunks:
                yield chunk
        except (ComponentError, OSError) as exc:
            raise Problem(OssProblem.READ_FAILED, exc) from exc

    def unsupported(self, name: str, rpc: str) -> NoReturn:
        """Refuse `rpc`, an operation no store here has a meaning for (ACLs, versions, signed URLs)."""
        raise Problem(OssProblem.UNSUPPORTED, rpc=rpc, kind=self.store(name).kind)
