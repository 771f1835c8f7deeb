"""Shared plumbing of the Layotto API servicers."""

from __future__ import annotations

from layotto.api.common import Ctx, abort
from layotto.runtime.runtime import Runtime

__all__ = ["ApiBase", "Ctx", "abort"]


class ApiBase:
    """Each block's servicer mixin derives from this; they are composed in api/layotto/__init__.py."""

    rt: Runtime

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def start_api(self) -> None:
        """Called once after the runtime started: precompute per-store lookups here."""

    async def stop_api(self) -> None:
        """Called once at shutdown, before components close."""
