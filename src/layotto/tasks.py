"""Background tasks: the one way a part stops the task it started."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Future[Any] | None) -> None:
    """Cancel `task` and wait until it has ended (its cancellation swallowed; any other error
    it ends with is raised), so nothing it holds outlives the part that stops it."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
