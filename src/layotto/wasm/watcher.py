"""Reloads a function whose .wasm file was rewritten (upstream watches its files with fsnotify).

It polls each file's (mtime, size, inode), which needs nothing from the platform and sees a
file replaced by a rename as well as one written in place, and reloads once the file has held
still for one interval, so a file caught half-written is not taken for a broken one."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from layotto.wasm.functions import Functions
from layotto.wasm.instance import file_stamp

__all__ = ["FileWatcher"]

log = logging.getLogger("layotto.wasm")

Stamp = tuple[int, int, int]


class FileWatcher:
    def __init__(self, functions: Functions, interval: float = 0.5) -> None:
        self._functions = functions
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        settling: dict[str, Stamp] = {}
        refused: dict[str, Stamp] = {}
        while True:
            await asyncio.sleep(self._interval)
            for function in self._functions:
                try:
                    stamp = await asyncio.to_thread(file_stamp, function.spec.path)
                except OSError:
                    continue  # removed, or being renamed over: looked at again next time
                if stamp in (function.pool.program.stamp, refused.get(function.id)):
                    settling.pop(function.id, None)
                    continue
                if settling.get(function.id) != stamp:
                    settling[function.id] = stamp
                    continue
                del settling[function.id]
                try:
                    reloaded = await self._functions.reload(function.id)
                except Exception:
                    log.exception("reloading WASM function %r failed", function.id)
                    reloaded = False
                if not reloaded:
                    refused[function.id] = stamp
                else:
                    refused.pop(function.id, None)
