"""Files on the sidecar's disk, under a root folder.

Upstream's `local` store opens whatever path the caller names; this one confines every name
to `rootPath`, so an app cannot read or overwrite files outside it. The File block's core
checks names as text first; here every name is resolved (links followed) and must land inside
the root before anything is opened; the file itself is then opened without following a link,
so a link swapped in for it after the check is not followed either. Links inside the root that
lead outside it, or nowhere, are left out of listings.

Writes stream into a file in `<root>/.tmp` (never beside the target: a name like "." would put
it beside the root) and are renamed into place, so readers never see half a file. The names
under `.tmp` are the store's own and no caller's. Disk I/O runs in worker threads, a chunk at
a time, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import stat as stat_mod
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO

from layotto.components.base import ComponentContext, Metadata
from layotto.components.file.base import FileInfo, FileListing, FileMeta, FileStore
from layotto.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError

CHUNK = 102400  # upstream's GetFile chunk size
FILE_MODE = "fileMode"
FILE_FLAG = "fileFlag"
#: Permission bits only: no setuid, setgid or sticky bit, whoever the sidecar runs as.
MAX_MODE = 0o777
#: Where writes stream before their rename; a hidden name, so listings leave it out.
TMP = ".tmp"
#: Left by writes a crash interrupted once this old; younger ones may be a live sidecar's.
_STALE_SECONDS = 3600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: A FIFO or device in the root must not hang a worker thread in open().
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def _prepare_root(raw: str) -> Path:
    root = Path(raw).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    tmp = root / TMP
    tmp.mkdir(exist_ok=True)
    stale = time.time() - _STALE_SECONDS
    for leftover in tmp.iterdir():
        with contextlib.suppress(OSError):
            if leftover.lstat().st_mtime < stale:
                leftover.unlink()
    return root


@contextlib.contextmanager
def _told_as(name: str) -> Iterator[None]:
    """The OS's errors for the caller's `name`, in the store's words and without the server's
    path."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"file {name} does not exist") from None
    except IsADirectoryError:
        raise InvalidArgumentError(f"{name} is a directory") from None


class LocalFileStore(FileStore):
    metadata_keys = ("rootPath",)
    root: Path

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        default = Path(os.environ.get("LAYOTTO_DATA_DIR", Path.home() / ".layotto")) / "files" / context.name
        self.root = await asyncio.to_thread(_prepare_root, metadata.get_str("rootPath") or str(default))
        self._tmp = self.root / TMP

    # ---- names ----
    def _inside(self, name: str, path: Path, *, root: bool) -> Path:
        if not path.is_relative_to(self.root):
            raise InvalidArgumentError(f"file name {name!r} points outside the store")
        if path == self.root and not root:
            raise InvalidArgumentError(f"file name {name!r} names the store's root folder, not a file")
        if path.is_relative_to(self._tmp):
            raise InvalidArgumentError(f"file name {name!r} is in the store's own folder {TMP}")
        return path

    def _lexical(self, name: str) -> Path:
        """Where `name` points, by its text alone (a leading "/" is the root, as upstream's
        absolute paths land inside the store here)."""
        if not name:
            raise InvalidArgumentError("file name is empty")
        if "\x00" in name:
            raise InvalidArgumentError("file name holds a NUL byte")
        return Path(os.path.normpath(self.root / name.lstrip("/")))

    def _resolve(self, name: str, *, root: bool = False) -> Path:
        """The real path `name` stands for (every link followed), which must be inside the root."""
        lexical = self._inside(name, self._lexical(name), root=root)
        # realpath, not Path.resolve: on a link loop it stops instead of raising with the path.
        return self._inside(name, Path(os.path.realpath(lexical)), root=root)

    def _entry(self, name: str) -> Path:
        """The directory entry `name` is: its folder resolved, the entry itself not followed."""
        lexical = self._inside(name, self._lexical(name), root=False)
        folder = self._inside(name, Path(os.path.realpath(lexical.parent)), root=True)
        return self._inside(name, folder / lexical.name, root=False)

    # ---- operations ----
    async def put(self, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str]) -> None:
        mode = self._int(metadata, FILE_MODE, 0o644)
        if not 0 <= mode <= MAX_MODE:
            raise InvalidArgumentError(f"wrong {FILE_MODE} value: permission bits only, 0 to {MAX_MODE}")
        exclusive = bool(self._int(metadata, FILE_FLAG, 0) & os.O_EXCL)
        path = await asyncio.to_thread(self._resolve, name)

        def start() -> tuple[IO[bytes], str]:
            # Early, so that a write bound to fail is not streamed first; `_place` decides.
            for folder in self._missing(path):
                if os.path.lexists(folder):
                    raise InvalidArgumentError(f"{name}: a folder on its path is a file")
            if exclusive and os.path.lexists(path):
                raise AlreadyExistsError(f"file {name} already exists")
            self._tmp.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
            return os.fdopen(fd, "wb"), tmp

        out, tmp = await asyncio.to_thread(start)
        try:
            with out:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(os.fchmod, out.fileno(), mode)
            await asyncio.to_thread(self._place, name, tmp, path, exclusive)
        finally:
            await asyncio.to_thread(Path(tmp).unlink, missing_ok=True)

    def _missing(self, path: Path) -> list[Path]:
        """The folders above `path` that are not folders yet, outermost first."""
        missing = []
        for folder in path.parents:
            if folder == self.root or os.path.isdir(folder):
                break
            missing.append(folder)
        return missing[::-1]

    def _place(self, name: str, tmp: str, path: Path, exclusive: bool) -> None:
        made: list[Path] = []
        try:
            for folder in self._missing(path):
                try:
                    folder.mkdir()
                except FileExistsError:
                    if not os.path.isdir(folder):
                        raise InvalidArgumentError(f"{name}: a folder on its path is a file") from None
                    continue
                made.append(folder)
            # Checked again: a folder on the way could have been swapped for a link by now.
            self._inside(name, Path(os.path.realpath(path.parent)) / path.name, root=False)
            with _told_as(name):
                if not exclusive:
                    os.replace(tmp, path)
                    return
                try:
                    # A link fails when the name exists: no window between "is it there" and the write.
                    os.link(tmp, path, follow_symlinks=False)
                except FileExistsError:
                    raise AlreadyExistsError(f"file {name} already exists") from None
        except BaseException:
            # A refused write leaves the tree as it found it.
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    @staticmethod
    def _int(metadata: Mapping[str, str], key: str, default: int) -> int:
        raw = metadata.get(key)
        if raw in (None, ""):
            return default
        try:
            return int(str(raw))
        except ValueError:
            raise InvalidArgumentError(f"wrong {key} value: not a decimal number") from None

    async def get(self, name: str, metadata: Mapping[str, str]) -> AsyncIterator[bytes]:
        path = await asyncio.to_thread(self._resolve, name)

        def open_file() -> IO[bytes]:
            with _told_as(name):
                fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY)
            try:
                if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
                    raise NotFoundError(f"file {name} does not exist")
                return os.fdopen(fd, "rb")
            except BaseException:
                os.close(fd)
                raise

        handle = await asyncio.to_thread(open_file)
        with handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk

    async def list(self, directory: str, metadata: Mapping[str, str], page_size: int, marker: str) -> FileListing:
        def scan() -> list[FileInfo]:
            path = self._resolve(directory, root=True) if directory.strip("/") else self.root
            if not path.is_dir():
                raise NotFoundError(f"directory {directory} does not exist")
            entries = []
            with _told_as(directory), os.scandir(path) as found:
                listed = sorted(found, key=lambda e: e.name)
            for entry in listed:
                if entry.name.startswith(".") or entry.name <= marker:
                    continue
                info = self._listed(entry)
                if info is not None:
                    entries.append(
                        FileInfo(entry.name, info.st_size, _iso(info.st_mtime), {"IsDir": str(entry.is_dir()).lower()})
                    )
            return entries

        entries = await asyncio.to_thread(scan)
        if page_size > 0 and len(entries) > page_size:
            page = entries[:page_size]
            return FileListing(page, page[-1].name, True)
        return FileListing(entries)

    def _listed(self, entry: os.DirEntry[str]) -> os.stat_result | None:
        """What a listing shows of `entry`; None to leave it out: a link that leads outside the
        root or to nothing, or an entry removed while listing."""
        try:
            if entry.is_symlink():
                target = Path(os.path.realpath(entry.path))
                if not target.is_relative_to(self.root) or target.is_relative_to(self._tmp):
                    return None
            return entry.stat()
        except OSError:
            return None

    async def delete(self, name: str, metadata: Mapping[str, str]) -> None:
        def remove() -> None:
            # The entry itself: removing a link removes the link, never what it points at.
            path = self._entry(name)
            with _told_as(name):
                path.unlink()

        await asyncio.to_thread(remove)

    async def stat(self, name: str, metadata: Mapping[str, str]) -> FileMeta:
        def look() -> os.stat_result:
            path = self._resolve(name, root=True)
            with _told_as(name):
                info = os.stat(path, follow_symlinks=False)
            # Still a link once resolved: one that loops, or swapped in since; neither is a file.
            if stat_mod.S_ISLNK(info.st_mode):
                raise NotFoundError(f"file {name} does not exist")
            return info

        info = await asyncio.to_thread(look)
        meta = {
            "FileMode": [str(stat_mod.S_IMODE(info.st_mode))],
            "IsDir": [str(stat_mod.S_ISDIR(info.st_mode)).lower()],
        }
        return FileMeta(info.st_size, _iso(info.st_mtime), meta)
