"""The File block's interface: streamed put/get, paged list, delete, stat."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from layotto.components.base import Component


@dataclass(slots=True)
class FileInfo:
    name: str
    size: int
    last_modified: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FileListing:
    files: list[FileInfo]
    marker: str = ""
    is_truncated: bool = False


@dataclass(slots=True)
class FileMeta:
    size: int
    last_modified: str
    metadata: dict[str, list[str]] = field(default_factory=dict)


class FileStore(Component):
    @abstractmethod
    async def put(self, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str]) -> None:
        """Write the whole stream; the file appears complete or not at all."""

    @abstractmethod
    def get(self, name: str, metadata: Mapping[str, str]) -> AsyncIterator[bytes]:
        """The file's bytes in chunks; raises NotFoundError before the first chunk."""

    @abstractmethod
    async def list(self, directory: str, metadata: Mapping[str, str], page_size: int, marker: str) -> FileListing:
        """Entries of a directory in name order, `page_size` at a time after `marker`."""

    @abstractmethod
    async def delete(self, name: str, metadata: Mapping[str, str]) -> None: ...

    @abstractmethod
    async def stat(self, name: str, metadata: Mapping[str, str]) -> FileMeta: ...
