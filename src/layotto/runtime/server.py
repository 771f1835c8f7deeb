"""Runs the sidecar: components, the gRPC server, the actuator, and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol, cast

import grpc

from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError
from layotto.runtime.runtime import Runtime, ServiceFactory

log = logging.getLogger("layotto.server")


class Api(Protocol):
    async def start_api(self) -> None: ...
    async def stop_api(self) -> None: ...


#: Each API registers its servicers on the server and returns an object with start/stop hooks.
ApiRegistrar = Callable[[grpc.aio.Server, Runtime], Api]


def _api_registrars() -> list[ApiRegistrar]:
    from layotto.api.dapr import register as register_dapr
    from layotto.api.extension import register as register_extension
    from layotto.api.health import register as register_health
    from layotto.api.layotto import register as register_layotto
    from layotto.api.layotto.lifecycle import register as register_lifecycle

    return [register_layotto, register_lifecycle, register_dapr, register_extension, register_health]


def _service_factories() -> list[ServiceFactory]:
    """Background services of the blocks (event delivery, watchers), started after components."""
    from layotto.runtime.delivery import delivery_services

    return [delivery_services]


def _interceptors(config: RuntimeConfig) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    from layotto.api import auth, filters
    from layotto.tracing.interceptor import interceptors as tracing

    # The token check first: a refused call must not count against flow control, nor be traced.
    return [*auth.interceptors(config.api_token), *tracing(config), *filters.from_config(config.stream_filters)]


async def _close_interceptors(interceptors: list[grpc.aio.ServerInterceptor[Any, Any]]) -> None:
    """The stop hook of interceptors that have one (tracing flushes its exporters), run once
    calls and event deliveries are over."""
    for interceptor in interceptors:
        close = getattr(interceptor, "close", None)
        if close is None:
            continue
        try:
            await close()
        except Exception:
            log.exception("stopping an interceptor failed")


def _serve_registered_methods_generically(server: grpc.aio.Server) -> None:
    """Route the generated stubs' "registered methods" through generic handler lookup.

    grpc.aio keeps a pending core request per registered method, and the cost shows on every
    call: with the ~200 methods of the Layotto, Dapr and extension services it was ~0.05
    CPU-ms per unary call (docs/benchmarks.md). The generated `add_*Servicer_to_server`
    functions register a generic handler for the same methods as well, so nothing is lost;
    a hand-written registration gets one here in case it has none.
    """

    def add_as_generic(service_name: str, method_handlers: dict[str, Any]) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, method_handlers),))

    cast(Any, server).add_registered_method_handlers = add_as_generic


class Sidecar:
    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.rt = Runtime(config)
        self.server: grpc.aio.Server | None = None
        self.apis: list[Api] = []
        self.interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = []
        self.actuator: object | None = None
        self.port = 0
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        from layotto.actuator.http import Actuator

        cfg = self.config
        actuator: Actuator | None = None
        if cfg.actuator_address:
            actuator = Actuator(self.rt, cfg.actuator_address)
            try:
                await actuator.start()
            except OSError as exc:
                raise ConfigError(
                    f"actuator cannot listen on {cfg.actuator_address}: {exc.strerror}", cfg.source
                ) from None
            from layotto.api.metrics import render as render_metrics

            actuator.routes["/metrics"] = render_metrics
            from layotto.api.dapr.healthz import routes as dapr_health_routes

            actuator.routes.update(dapr_health_routes(self.rt))
            self.actuator = actuator
        options = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self.interceptors = _interceptors(cfg)
        server = grpc.aio.server(options=options, interceptors=self.interceptors)
        _serve_registered_methods_generically(server)
        self.apis = [register(server, self.rt) for register in _api_registrars()]
        target = f"unix:{cfg.grpc_address}" if cfg.grpc_network == "unix" else cfg.grpc_address
        try:
            self.port = server.add_insecure_port(target)
        except RuntimeError as exc:
            self.port = 0
            detail = str(exc)
        else:
            detail = "address in use or not available"
        if cfg.grpc_network != "unix" and self.port == 0:
            if actuator is not None:
                await actuator.stop()
            raise ConfigError(f"cannot listen on {cfg.grpc_address}: {detail}", cfg.source)
        self.server = server
        try:
            await self.rt.start(_service_factories())
            for api in self.apis:
                await api.start_api()
        except BaseException:
            if actuator is not None:
                await actuator.stop()
            raise
        await server.start()
        for warning in cfg.warnings:
            log.warning("%s", warning)
        log.info("layotto listening on %s (app id %r)", cfg.grpc_address, self.rt.app_id)

    async def stop(self) -> None:
        """Stop taking calls, let in-flight ones finish (up to the grace period), close all."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.rt.status = "DOWN"
        if self.server is not None:
            await self.server.stop(self.config.shutdown_grace)
        for api in self.apis:
            try:
                await api.stop_api()
            except Exception:
                log.exception("stopping an API failed")
        await self.rt.close()
        await _close_interceptors(self.interceptors)
        if self.actuator is not None:
            from layotto.actuator.http import Actuator

            assert isinstance(self.actuator, Actuator)
            await self.actuator.stop()
        log.info("layotto stopped")

    async def wait(self) -> None:
        await self._stopped.wait()


async def serve(config: RuntimeConfig) -> None:
    sidecar = Sidecar(config)
    await sidecar.start()
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopping.append(asyncio.ensure_future(sidecar.stop())))
    await sidecar.wait()
    for task in stopping:
        await task
