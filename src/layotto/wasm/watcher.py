"""Reloads a function whose .wasm file was rewritten (upstream watches its files with fsnotify).

The polling is runtime/filewatch.py's, which component hot reload uses too: a function whose
file's stamp is not its running build's is reloaded once the file has held still for one
interval; a file that is missing (being renamed over) is looked at again next time."""

from __future__ import annotations

import asyncio
import logging

from layotto.runtime.filewatch import Stamp, Watcher, file_stamp
from layotto.wasm.functions import Functions

__all__ = ["FileWatcher"]

log = logging.getLogger("layotto.wasm")


class FileWatcher:
    def __init__(self, functions: Functions, interval: float = 0.5) -> None:
        self._functions = functions
        self._watcher: Watcher[str] = Watcher(self._sample, self._reload, self._running, interval, "wasm-watcher")

    def start(self) -> None:
        self._watcher.start()

    async def stop(self) -> None:
        await self._watcher.stop()

    async def _sample(self) -> dict[str, Stamp | None]:
        stamps: dict[str, Stamp | None] = {}
        for function in self._functions:
            try:
                stamps[function.id] = await asyncio.to_thread(file_stamp, function.spec.path)
            except OSError:
                continue  # removed, or being renamed over: looked at again next time
        return stamps

    def _running(self, function_id: str) -> Stamp | None:
        found = self._functions.get(function_id)
        return found.pool.program.stamp if found is not None else None

    async def _reload(self, function_id: str, stamp: Stamp | None) -> bool:
        try:
            return await self._functions.reload(function_id)
        except Exception:
            log.exception("reloading WASM function %r failed", function_id)
            return False
