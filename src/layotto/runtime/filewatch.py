"""Watching files for changes, by polling: what WASM functions (wasm/watcher.py) and component
hot reload (runtime/reload.py) both use.

Each key (a file, a function) has a stamp, its file's (mtime, size, inode), which needs nothing
from the platform and sees a file replaced by a rename as well as one written in place. A key
whose stamp differs from the one its user has applied is handed over once the stamp has held
still for one interval, so a file caught half-written is not taken for a broken one; a change
the user refused is not handed over again until the file changes once more.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

from layotto.tasks import stop_task

__all__ = ["Stamp", "Watcher", "file_stamp"]

log = logging.getLogger("layotto.filewatch")

#: A file's (mtime in ns, size, inode); None for a file that is not there.
Stamp = tuple[int, int, int]
K = TypeVar("K", bound=Hashable)


def file_stamp(path: str) -> Stamp:
    """The stamp of `path` (OSError when it cannot be read)."""
    found = os.stat(path)
    return found.st_mtime_ns, found.st_size, found.st_ino


class Watcher(Generic[K]):
    """Polls `sample` every `interval` seconds: key -> stamp now (None: gone; a key left out is
    not looked at this time). A key whose stamp is not `applied(key)` is passed to `apply` once
    the same stamp is seen twice in a row; `apply` returns whether it took the change (the
    user's `applied` says so from then on) or refused it (not offered again until the stamp
    changes)."""

    def __init__(
        self,
        sample: Callable[[], Awaitable[Mapping[K, Stamp | None]]],
        apply: Callable[[K, Stamp | None], Awaitable[bool]],
        applied: Callable[[K], Stamp | None],
        interval: float = 0.5,
        name: str = "file-watcher",
    ) -> None:
        self._sample = sample
        self._apply = apply
        self._applied = applied
        self.interval = interval
        self._name = name
        self._settling: dict[K, Stamp | None] = {}
        self._refused: dict[K, Stamp | None] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # the watcher outlives any one bad look
                log.exception("%s: looking for changes failed", self._name)

    async def poll(self) -> None:
        """One look at every key."""
        for key, stamp in (await self._sample()).items():
            if stamp == self._applied(key) or (key in self._refused and self._refused[key] == stamp):
                self._settling.pop(key, None)
                continue
            if key not in self._settling or self._settling[key] != stamp:
                self._settling[key] = stamp
                continue
            del self._settling[key]
            try:
                taken = await self._apply(key, stamp)
            except Exception:
                log.exception("%s: applying the change of %r failed", self._name, key)
                taken = False
            if taken:
                self._refused.pop(key, None)
            else:
                self._refused[key] = stamp
