"""The File block: store lookup and the streamed and unary calls to the file store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from enum import Enum

from layotto.components.file.base import FileListing, FileMeta, FileStore
from layotto.core.problems import Problem, named
from layotto.errors import ComponentError

__all__ = ["FileCore", "FileProblem"]

#: What a file store may fail with: its own errors, and the OS's for local files.
_FAILURES = (ComponentError, OSError)


class FileProblem(Enum):
    REQUEST_MISSING = "the request is missing"
    STORE_NOT_FOUND = "file store not found"  # facts: store
    GET_FAILED = "get failed"
    PUT_FAILED = "put failed"
    LIST_FAILED = "list failed"
    DELETE_FAILED = "delete failed"
    STAT_FAILED = "stat failed"


class FileCore:
    def __init__(self, stores: Mapping[str, FileStore]) -> None:
        self._stores = stores

    def store(self, name: str) -> FileStore:
        return named(self._stores, name, FileProblem.STORE_NOT_FOUND, store=name)

    async def get(self, store_name: str, name: str, metadata: Mapping[str, str]) -> AsyncIterator[bytes]:
        chunks = self.store(store_name).get(name, metadata)
        try:
            async for chunk in chunks:
                yield chunk
        except _FAILURES as exc:
            raise Problem(FileProblem.GET_FAILED, exc) from exc

    async def put(self, store_name: str, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str]) -> None:
        store = self.store(store_name)
        try:
            await store.put(name, chunks, metadata)
        except _FAILURES as exc:
            raise Problem(FileProblem.PUT_FAILED, exc) from exc

    async def list(
        self, store_name: str, directory: str, metadata: Mapping[str, str], page_size: int, marker: str
    ) -> FileListing:
        store = self.store(store_name)
        try:
            return await store.list(directory, metadata, page_size, marker)
        except _FAILURES as exc:
            raise Problem(FileProblem.LIST_FAILED, exc) from exc

    async def delete(self, store_name: str, name: str, metadata: Mapping[str, str]) -> None:
        store = self.store(store_name)
        try:
            await store.delete(name, metadata)
        except _FAILURES as exc:
            raise Problem(FileProblem.DELETE_FAILED, exc) from exc

    async def stat(self, store_name: str, name: str, metadata: Mapping[str, str]) -> FileMeta:
        store = self.store(store_name)
        try:
            return await store.stat(name, metadata)
        except _FAILURES as exc:
            raise Problem(FileProblem.STAT_FAILED, exc) from exc
