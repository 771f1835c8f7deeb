"""Background tasks: the one way a part stops the task it started."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Future[Any] | None, patience: float = 0.5) -> None:
    """Cancel `task` and wait until it has ended, so nothing it holds outlives the part that
    stops it. Cancelled again every `patience` seconds: on Python 3.11 a client library's
    `wait_for` can swallow a cancellation that meets its timeout, and a stop must not hang on
    it. The task's cancellation is the expected end; any other error it ended with is raised."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience)
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error
