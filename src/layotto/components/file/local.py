"""Files on the sidecar's disk, under a root folder.

Upstream's `local` store opens whatever path the caller names; this one confines every name
to `rootPath`, so an app cannot read or overwrite files outside it. Disk I/O runs in worker
threads, a chunk at a time, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat as stat_mod
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from layotto.components.base import ComponentContext, Metadata
from layotto.components.file.base import FileInfo, FileListing, FileMeta, FileStore
from layotto.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError

CHUNK = 102400  # upstream's GetFile chunk size
FILE_MODE = "fileMode"
FILE_FLAG = "fileFlag"


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def _prepare_root(raw: str) -> Path:
    root = Path(raw).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


class LocalFileStore(FileStore):
    root: Path

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        default = Path(os.environ.get("LAYOTTO_DATA_DIR", Path.home() / ".layotto")) / "files" / context.name
        self.root = await asyncio.to_thread(_prepare_root, metadata.get_str("rootPath") or str(default))

    def _resolve(self, name: str) -> Path:
        if not name:
            raise InvalidArgumentError("file name is empty")
        # Resolved (symlinks too) before the check, so no name can reach outside the root.
        path = (self.root / name.lstrip("/")).resolve()
        if path != self.root and self.root not in path.parents:
            raise InvalidArgumentError(f"file name {name!r} points outside the store")
        return path

    async def _path(self, name: str) -> Path:
        return await asyncio.to_thread(self._resolve, name)

    async def put(self, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str]) -> None:
        path = await self._path(name)
        mode = self._int(metadata, FILE_MODE, 0o644)
        exclusive = bool(self._int(metadata, FILE_FLAG, 0) & os.O_EXCL)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        if exclusive and await asyncio.to_thread(path.exists):
            raise AlreadyExistsError(f"file {name} already exists")
        # Written beside the target and renamed, so readers never see half a file.
        fd, tmp = await asyncio.to_thread(tempfile.mkstemp, dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(os.chmod, tmp, mode)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            await asyncio.to_thread(Path(tmp).unlink, missing_ok=True)
            raise

    @staticmethod
    def _int(metadata: Mapping[str, str], key: str, default: int) -> int:
        raw = metadata.get(key)
        if raw in (None, ""):
            return default
        try:
            return int(str(raw))
        except ValueError:
            raise InvalidArgumentError(f"wrong {key} value: {raw!r}") from None

    async def get(self, name: str, metadata: Mapping[str, str]) -> AsyncIterator[bytes]:
        path = await self._path(name)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"file {name} does not exist") from None
        with handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk

    async def list(self, directory: str, metadata: Mapping[str, str], page_size: int, marker: str) -> FileListing:
        path = await self._path(directory) if directory.strip("/") else self.root

        def scan() -> list[FileInfo]:
            if not path.is_dir():
                raise NotFoundError(f"directory {directory} does not exist")
            entries = []
            for entry in sorted(os.scandir(path), key=lambda e: e.name):
                if entry.name.startswith(".") or entry.name <= marker:
                    continue
                info = entry.stat()
                entries.append(
                    FileInfo(entry.name, info.st_size, _iso(info.st_mtime), {"IsDir": str(entry.is_dir()).lower()})
                )
            return entries

        entries = await asyncio.to_thread(scan)
        if page_size > 0 and len(entries) > page_size:
            page = entries[:page_size]
            return FileListing(page, page[-1].name, True)
        return FileListing(entries)

    async def delete(self, name: str, metadata: Mapping[str, str]) -> None:
        try:
            await asyncio.to_thread((await self._path(name)).unlink)
        except FileNotFoundError:
            raise NotFoundError(f"file {name} does not exist") from None
        except IsADirectoryError:
            raise InvalidArgumentError(f"{name} is a directory") from None

    async def stat(self, name: str, metadata: Mapping[str, str]) -> FileMeta:
        try:
            info = await asyncio.to_thread((await self._path(name)).stat)
        except FileNotFoundError:
            raise NotFoundError(f"file {name} does not exist") from None
        meta = {
            "FileMode": [str(stat_mod.S_IMODE(info.st_mode))],
            "IsDir": [str(stat_mod.S_ISDIR(info.st_mode)).lower()],
        }
        return FileMeta(info.st_size, _iso(info.st_mtime), meta)
