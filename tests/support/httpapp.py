"""An HTTP app for the tests, served by aiohttp on a free loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from tests.support.sidecar import free_port


@contextlib.asynccontextmanager
async def http_server(routes: web.Application) -> AsyncIterator[int]:
    """Serve `routes`; yields the port, listening."""
    runner = web.AppRunner(routes)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()
