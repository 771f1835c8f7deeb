"""WASM functions (upstream Layotto's FaaS) on wasmtime: an entry point beside the gRPC APIs.

A listener with a `Layotto` stream filter routes HTTP requests by their `id` header to loaded
functions (proxy-wasm ABI 0.2.0 guests, WASI preview 1), whose host calls reach the building
blocks through the same cores as the gRPC APIs (`blocks.py`, answered from `answers.toml`). A
listener with a `wasm_filter` serves upstream's install/uninstall/update endpoints, and a
rewritten .wasm file is reloaded. docs/wasm.md has the ABI, the limits and the config.

`sidecar.py` builds it (`build`) once the APIs are registered and stops it first, so calls in
flight finish while the components they use are still up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layotto.config.model import WasmConfig
from layotto.errors import ConfigError
from layotto.runtime.invoke import Invoker
from layotto.runtime.runtime import Runtime
from layotto.wasm.answers import load
from layotto.wasm.blocks import Blocks, InvokeService
from layotto.wasm.engine import WasmEngine
from layotto.wasm.exchange import SharedData
from layotto.wasm.functions import Functions
from layotto.wasm.host import HostEnv
from layotto.wasm.http import Handler, Listener, admin_handler, function_handler
from layotto.wasm.watcher import FileWatcher

if TYPE_CHECKING:
    from layotto.observability.tracing.tracer import Tracer

__all__ = ["WasmServer", "build"]

log = logging.getLogger("layotto.wasm")


@dataclass
class WasmServer:
    """The functions, their listeners and the file watcher, started and stopped together."""

    config: WasmConfig
    engine: WasmEngine
    functions: Functions
    listeners: list[Listener]
    admin: Listener | None
    watcher: FileWatcher

    async def start(self) -> None:
        """Load the configured functions, then listen; a ConfigError names what failed."""
        self.engine.start()
        started: list[Listener] = []
        try:
            await self.functions.load(self.config.functions)
            for listener in [*self.listeners, *([self.admin] if self.admin else [])]:
                try:
                    await listener.start()
                except OSError as exc:
                    what = "the WASM management listener" if listener is self.admin else "a WASM function listener"
                    raise ConfigError(
                        f"{what} cannot listen on {listener.address}: {exc.strerror or exc}", self.config.source
                    ) from None
                started.append(listener)
        except BaseException:
            for listener in started:
                await listener.stop()
            await self.functions.close()
            self.engine.stop()
            raise
        self.watcher.start()
        ids = ", ".join(repr(f.id) for f in self.functions)
        log.info("WASM functions %s served on %s", ids or "(none)", ", ".join(self.config.addresses) or "no listener")

    async def stop(self) -> None:
        """No new calls; calls in flight finish (up to the grace period), then the functions go."""
        await self.watcher.stop()
        for listener in [*self.listeners, *([self.admin] if self.admin else [])]:
            try:
                await listener.stop()
            except Exception:
                log.exception("stopping a WASM listener failed")
        await self.functions.close()
        self.engine.stop()


def build(rt: Runtime, invoker: Invoker, tracer: Tracer | None, *, watch_interval: float = 0.5) -> WasmServer | None:
    """The WASM server the config asks for over the started runtime (None when it has no
    `Layotto` or `wasm_filter` listener). Called on the event loop."""
    config = rt.config.wasm
    if not config.enabled:
        return None
    engine = WasmEngine()
    loop, book = asyncio.get_running_loop(), load()

    def host(invoke: InvokeService) -> HostEnv:
        return HostEnv(loop, Blocks.of(rt, book, invoke), tracer, SharedData(), itertools.count(2))

    functions = Functions(engine, invoker, host, tracer)

    def listener(address: str, handler: Handler) -> Listener:
        return Listener(address, handler, max_body=rt.config.max_message_bytes, grace=rt.config.shutdown_grace)

    listeners = [listener(address, function_handler(functions)) for address in config.addresses]
    admin = listener(config.admin_address, admin_handler(functions)) if config.admin_address else None
    return WasmServer(config, engine, functions, listeners, admin, FileWatcher(functions, watch_interval))
