"""The File block: store lookup, the checks every name and option passes before a store sees
it, and the streamed and unary calls to the file store.

A name is checked here, as text, before any store touches the disk: UTF-8 without control
characters, at most MAX_NAME_BYTES long, and no `..` that climbs above the store's root (a
leading "/" is the root, as upstream's absolute paths are). Stores confine names again on their
side (the local store resolves links and refuses what lands outside its root).

A failure's message names the file as the caller named it: an OS error is told again with the
caller's name in place of the server's path, so no reply shows where the store keeps its files.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping
from enum import Enum

from layotto.components.file.base import FileListing, FileMeta, FileStore
from layotto.core import names
from layotto.core.problems import Problem, named
from layotto.errors import ComponentError

__all__ = ["FILE_FLAG", "FILE_MODE", "MAX_MODE", "MAX_NAME_BYTES", "FileCore", "FileProblem"]

#: Longest name, in UTF-8 bytes: Linux's PATH_MAX, so an OS error's text naming it stays short.
MAX_NAME_BYTES = 4096
#: Put metadata: the new file's permission bits, and open(2) flags (O_EXCL: refuse to replace).
FILE_MODE = "fileMode"
FILE_FLAG = "fileFlag"
#: Permission bits only: setuid, setgid and sticky would let an app plant a setuid file
#: through a sidecar that runs as root.
MAX_MODE = 0o777
_MAX_FLAG = 2**31 - 1
#: Upstream reads both with Go's strconv.Atoi: decimal, an optional sign, nothing else.
_DECIMAL = re.compile(r"[+-]?[0-9]{1,19}")
_SHOWN = 32


class FileProblem(Enum):
    REQUEST_MISSING = "the request is missing"
    STORE_NOT_FOUND = "file store not found"  # facts: store
    BAD_NAME = "the file name is refused"  # facts: field, reason
    BAD_METADATA = "a metadata value is refused"  # facts: key, value, limit
    GET_FAILED = "get failed"
    PUT_FAILED = "put failed"
    LIST_FAILED = "list failed"
    DELETE_FAILED = "delete failed"
    STAT_FAILED = "stat failed"


def _shown(value: str) -> str:
    """`value` quoted for a message, cut short: a caller's text is echoed, never a page of it."""
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")


def check_name(name: str, *, root: bool = False, field: str = "name") -> None:
    """Refuse `name` unless it names something inside the store; `root` lets it name the
    store's root folder itself (a listing, a stat)."""

    def refuse(reason: str) -> Problem:
        return Problem(FileProblem.BAD_NAME, field=field, reason=reason)

    if not name and not root:
        raise refuse("is empty")
    fault = names.text_fault(name, MAX_NAME_BYTES, "a name")
    if fault is not None:
        raise refuse(fault)
    depth = names.depth(name)
    if depth is None:
        raise refuse("leads outside the store: '..' climbs above its root")
    if depth == 0 and not root:
        raise refuse("names the store's root folder, not a file")


def _number(metadata: Mapping[str, str], key: str, low: int, high: int, limit: str) -> None:
    raw = metadata.get(key)
    if raw is None or raw == "":
        return
    if not _DECIMAL.fullmatch(raw) or not low <= int(raw) <= high:
        raise Problem(FileProblem.BAD_METADATA, key=key, value=_shown(raw), limit=limit)


def check_put_metadata(metadata: Mapping[str, str]) -> None:
    _number(
        metadata,
        FILE_MODE,
        0,
        MAX_MODE,
        f"permission bits only, a decimal number from 0 to {MAX_MODE} (0o777), e.g. 420 for rw-r--r--",
    )
    _number(metadata, FILE_FLAG, 0, _MAX_FLAG, f"open(2) flags, a decimal number from 0 to {_MAX_FLAG}")


def _as_named(exc: BaseException, name: str) -> BaseException:
    """`exc`, told with the caller's `name` instead of the server's path when it is an OS error
    (of the same class, so that its status code stays the same)."""
    if not isinstance(exc, OSError):
        return exc
    if exc.errno is None:
        return OSError(f"{name}: the file store failed ({type(exc).__name__})")
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), name)


#: What a file store may fail with: its own errors, and the OS's for local files.
_FAILURES = (ComponentError, OSError)


class FileCore:
    def __init__(self, stores: Mapping[str, FileStore]) -> None:
        self._stores = stores

    def store(self, name: str) -> FileStore:
        return named(self._stores, name, FileProblem.STORE_NOT_FOUND, store=name)

    async def get(self, store_name: str, name: str, metadata: Mapping[str, str]) -> AsyncIterator[bytes]:
        store = self.store(store_name)
        check_name(name)
        try:
            async for chunk in store.get(name, metadata):
                yield chunk
        except _FAILURES as exc:
            raise Problem(FileProblem.GET_FAILED, _as_named(exc, name)) from exc

    async def put(self, store_name: str, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str]) -> None:
        store = self.store(store_name)
        check_name(name)
        check_put_metadata(metadata)
        try:
            await store.put(name, chunks, metadata)
        except _FAILURES as exc:
            raise Problem(FileProblem.PUT_FAILED, _as_named(exc, name)) from exc

    async def list(
        self, store_name: str, directory: str, metadata: Mapping[str, str], page_size: int, marker: str
    ) -> FileListing:
        store = self.store(store_name)
        check_name(directory, root=True)
        try:
            return await store.list(directory, metadata, page_size, marker)
        except _FAILURES as exc:
            raise Problem(FileProblem.LIST_FAILED, _as_named(exc, directory)) from exc

    async def delete(self, store_name: str, name: str, metadata: Mapping[str, str]) -> None:
        store = self.store(store_name)
        check_name(name)
        try:
            await store.delete(name, metadata)
        except _FAILURES as exc:
            raise Problem(FileProblem.DELETE_FAILED, _as_named(exc, name)) from exc

    async def stat(self, store_name: str, name: str, metadata: Mapping[str, str]) -> FileMeta:
        store = self.store(store_name)
        check_name(name, root=bool(name))
        try:
            return await store.stat(name, metadata)
        except _FAILURES as exc:
            raise Problem(FileProblem.STAT_FAILED, _as_named(exc, name)) from exc
