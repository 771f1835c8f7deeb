"""Runs the sidecar: components, the gRPC server, the actuator, and graceful shutdown.

The assembly point, above every layer (see `[tool.importlinter]` in pyproject.toml): it builds
the runtime, the one tracer, the APIs and their interceptors, and wires them together.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import grpc

from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError
from layotto.runtime.appchannel import open_app_channel
from layotto.runtime.apphealth import AppHealth
from layotto.runtime.invoke import Invoker
from layotto.runtime.resiliency import Resiliency
from layotto.runtime.runtime import Runtime, ServiceFactory

if TYPE_CHECKING:
    from layotto.api.dapr_http import DaprHttpApi
    from layotto.components.delay_queue.base import DelayScheduler
    from layotto.observability.tracing.tracer import Tracer
    from layotto.runtime.appchannel import AppChannel, AppChannelFactory
    from layotto.wasm import WasmServer

log = logging.getLogger("layotto.server")


class Api(Protocol):
    async def start_api(self) -> None: ...
    async def stop_api(self) -> None: ...


def _register_apis(
    server: grpc.aio.Server,
    rt: Runtime,
    invoker: Invoker,
    delay_schedulers: Mapping[str, DelayScheduler],
    request_stop: Callable[[], None],
) -> list[Api]:
    """Serve every API on `server` over the started runtime; each returns its start/stop hooks.
    `request_stop` stops the sidecar as SIGTERM does (Dapr's Shutdown)."""
    from layotto.api.dapr import register as register_dapr
    from layotto.api.extension import register as register_extension
    from layotto.api.health import register as register_health
    from layotto.api.layotto import register as register_layotto
    from layotto.api.layotto.lifecycle import register as register_lifecycle

    return [
        register_layotto(server, rt, invoker),
        register_lifecycle(server, rt),
        register_dapr(server, rt, invoker, request_stop),
        *register_extension(server, rt, delay_schedulers),
        register_health(server, rt),
    ]


async def _start_delay_schedulers(rt: Runtime) -> dict[str, DelayScheduler]:
    """A started delay scheduler for each delay-capable pub/sub component (the DelayQueue API's)."""
    from layotto.components.delay_queue.base import scheduler_for
    from layotto.components.pubsub.base import PubSub

    schedulers: dict[str, DelayScheduler] = {}
    try:
        for name, component in rt.components("pubsub").items():
            spec = rt.spec("pubsub", name)
            metadata = spec.metadata if spec is not None else {}
            scheduler = scheduler_for(component, name, metadata) if isinstance(component, PubSub) else None
            if scheduler is not None:
                await scheduler.start()
                schedulers[name] = scheduler
    except BaseException:
        await _stop_delay_schedulers(schedulers)
        raise
    return schedulers


async def _stop_delay_schedulers(schedulers: Mapping[str, DelayScheduler]) -> None:
    for name, scheduler in schedulers.items():
        try:
            await scheduler.stop()
        except Exception:
            log.exception("stopping the delay queue of %s failed", name)


def _app_channels() -> dict[str, AppChannelFactory]:
    """The channel to the app for each `app.callback_api`."""
    from layotto.api.dapr.appchannel import DaprAppChannel
    from layotto.runtime.appchannel import LayottoAppChannel

    return {"layotto": LayottoAppChannel, "dapr": DaprAppChannel}


def _service_factories(channel: AppChannel | None, tracer: Tracer | None, health: AppHealth) -> list[ServiceFactory]:
    """Background services of the blocks (event delivery, input bindings, watchers), started
    after components."""
    from layotto.runtime.bindings import input_binding_services
    from layotto.runtime.delivery import delivery_services

    return [
        functools.partial(delivery_services, channel=channel, tracer=tracer, health=health),
        functools.partial(input_binding_services, channel=channel, tracer=tracer, health=health),
    ]


def _tracer(config: RuntimeConfig) -> Tracer | None:
    """The sidecar's one tracer (None with tracing off), shared by the server's interceptor and
    event delivery."""
    from layotto.observability.tracing.tracer import build

    return build(config)


def _interceptors(config: RuntimeConfig, tracer: Tracer | None) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    from layotto.api import auth, filters
    from layotto.observability.interceptor import interceptors as telemetry

    # Metrics whenever an actuator serves /metrics, the tracer's spans when tracing is on.
    observed = telemetry(config, tracer)
    # The token check first: a refused call must not count against flow control, nor be traced.
    return [*auth.interceptors(config.api_token), *observed, *filters.from_config(config.stream_filters)]


async def _close_interceptors(interceptors: list[grpc.aio.ServerInterceptor[Any, Any]]) -> None:
    """The stop hook of interceptors that have one, run once calls and event deliveries are
    over."""
    for interceptor in interceptors:
        close = getattr(interceptor, "close", None)
        if close is None:
            continue
        try:
            await close()
        except Exception:
            log.exception("stopping an interceptor failed")


async def _start_dapr_http(
    config: RuntimeConfig, rt: Runtime, invoker: Invoker, apis: list[Api], request_stop: Callable[[], None]
) -> DaprHttpApi | None:
    """Dapr's HTTP API, listening, when the config gives it an address (None without)."""
    if not config.dapr_http_address:
        return None
    from layotto.api.dapr.metadata import DaprMetadata, DaprMetadataApi
    from layotto.api.dapr_http import build

    # The Dapr gRPC API's metadata, so that an attribute set through either API is seen through both.
    shared = next(
        (p.metadata for api in apis for p in getattr(api, "parts", ()) if isinstance(p, DaprMetadataApi)), None
    )
    http = build(rt, invoker, config.dapr_http_address, metadata=shared or DaprMetadata(rt), shutdown=request_stop)
    await _listen(http.start, "Dapr HTTP API", config.dapr_http_address, config.source)
    return http


async def _start_wasm(rt: Runtime, invoker: Invoker, tracer: Tracer | None) -> WasmServer | None:
    """WASM functions, when a listener has upstream's `Layotto` or `wasm_filter` stream filter;
    after the APIs, since the functions' host calls use the same started block cores."""
    if not rt.config.wasm.enabled:
        return None
    from layotto.wasm import build

    wasm = build(rt, invoker, tracer)
    if wasm is not None:
        await wasm.start()
    return wasm


async def _listen(start: Callable[[], Awaitable[None]], what: str, address: str, source: str) -> None:
    """Start a listener; an address that cannot be had is a ConfigError naming it."""
    try:
        await start()
    except OSError as exc:
        raise ConfigError(f"{what} cannot listen on {address}: {exc.strerror or exc}", source) from None


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
        # One engine: the cores, event delivery and invocation share each target's breaker.
        self.rt = Runtime(config, app_channels=_app_channels(), resiliency=Resiliency(config.resiliency))
        self.server: grpc.aio.Server | None = None
        self.apis: list[Api] = []
        self.interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = []
        self.tracer: Tracer | None = None
        #: The one channel to the app, shared by event delivery and the invocation engine.
        self.app_channel: AppChannel | None = None
        self.invoker: Invoker | None = None
        #: The app's health (daprd's app health checks), watched by the services that push to it.
        self.app_health: AppHealth | None = None
        self.delay_schedulers: dict[str, DelayScheduler] = {}
        self.actuator: object | None = None
        self.dapr_http: DaprHttpApi | None = None
        self.wasm: WasmServer | None = None
        self.port = 0
        self._stopped = asyncio.Event()
        #: Stops asked for from within a call (Dapr's HTTP Shutdown), seen through by `wait`.
        self._stop_requests: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from layotto.actuator.http import Actuator
        from layotto.api.common import check_requests

        cfg = self.config
        # Before any listener: a bad `tracing` block is a config error with nothing to undo.
        self.tracer = _tracer(cfg)
        actuator: Actuator | None = None
        if cfg.actuator_address:
            actuator = Actuator(self.rt, cfg.actuator_address)
            await _listen(actuator.start, "actuator", cfg.actuator_address, cfg.source)
            from layotto.observability.metrics import render as render_metrics

            actuator.routes["/metrics"] = render_metrics
            from layotto.api.dapr.healthz import routes as dapr_health_routes

            actuator.routes.update(dapr_health_routes(self.rt))
            self.actuator = actuator
        options = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self.interceptors = _interceptors(cfg, self.tracer)
        server = grpc.aio.server(options=options, interceptors=self.interceptors)
        _serve_registered_methods_generically(server)
        # Undecodable requests answer INVALID_ARGUMENT, not UNKNOWN with a traceback logged each.
        check_requests(server)
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
            self.app_channel = open_app_channel(self.rt)
            self.app_health = AppHealth(self.app_channel, cfg.app.health_check)
            await self.app_health.start()
            await self.rt.start(_service_factories(self.app_channel, self.tracer, self.app_health))
            self.invoker = Invoker(self.rt, self.app_channel)
            await self.invoker.start()
            self.delay_schedulers = await _start_delay_schedulers(self.rt)
            # The APIs are built on the started components (each block's core binds them), and
            # registered before the server takes its first call.
            self.apis = _register_apis(server, self.rt, self.invoker, self.delay_schedulers, self.request_stop)
            for api in self.apis:
                await api.start_api()
            self.dapr_http = await _start_dapr_http(cfg, self.rt, self.invoker, self.apis, self.request_stop)
            self.wasm = await _start_wasm(self.rt, self.invoker, self.tracer)
        except BaseException:
            await self._close_parts()
            if actuator is not None:
                await actuator.stop()
            raise
        await server.start()
        for warning in cfg.warnings:
            log.warning("%s", warning)
        log.info("layotto listening on %s (app id %r)", cfg.grpc_address, self.rt.app_id)

    async def stop(self) -> None:
        """Drain, then stop: probes first (readiness 503, gRPC health NOT_SERVING), then open
        streams end (UNAVAILABLE "the sidecar is shutting down"), then the listeners stop taking
        calls and the unary ones in flight finish (up to the grace period), then all closes."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.rt.status = "DOWN"
        await self._drain_apis()
        await self._stop_wasm()
        await self._stop_dapr_http()
        if self.server is not None:
            await self.server.stop(self.config.shutdown_grace)
        await self._close_parts()
        await _close_interceptors(self.interceptors)
        if self.tracer is not None:  # flushes the exporters (never raises): every span is finished by now
            await self.tracer.close()
        if self.actuator is not None:
            from layotto.actuator.http import Actuator

            assert isinstance(self.actuator, Actuator)
            await self.actuator.stop()
        log.info("layotto stopped")

    def request_stop(self) -> None:
        """Stop as SIGTERM does, asked from within a call (Dapr's HTTP Shutdown)."""
        self._stop_requests.append(asyncio.ensure_future(self.stop()))

    async def _drain_apis(self) -> None:
        """The health service first, so that it says NOT_SERVING before anything ends; then
        every API ends its long-lived streams (subscriptions, watches), which would otherwise
        hold the listener for the whole grace period."""
        from layotto.api.health import HealthService

        apis = sorted(self.apis, key=lambda api: not isinstance(api, HealthService))
        for api in apis:
            drain = getattr(api, "drain_api", None)
            if drain is None:
                continue
            try:
                await drain()
            except Exception:
                log.exception("draining an API failed")

    async def _stop_wasm(self) -> None:
        """Before the APIs: the functions' calls in flight finish while the blocks are up."""
        wasm, self.wasm = self.wasm, None
        if wasm is not None:
            await wasm.stop()

    async def _stop_dapr_http(self) -> None:
        """First of all: its calls in flight finish while everything they use is still up."""
        http, self.dapr_http = self.dapr_http, None
        if http is not None:
            await http.stop()

    async def _close_parts(self) -> None:
        """APIs, then the delay schedulers and the invocation engine (it withdraws from name
        resolution while the components are up), then the components and their services, then
        the app channel."""
        apis, self.apis = self.apis, []
        for api in apis:
            try:
                await api.stop_api()
            except Exception:
                log.exception("stopping an API failed")
        schedulers, self.delay_schedulers = self.delay_schedulers, {}
        await _stop_delay_schedulers(schedulers)
        invoker, self.invoker = self.invoker, None
        if invoker is not None:
            await invoker.close()
        await self.rt.close()
        if self.app_health is not None:
            await self.app_health.stop()
        channel, self.app_channel = self.app_channel, None
        if channel is not None:
            await channel.close()

    async def wait(self) -> None:
        await self._stopped.wait()
        for task in list(self._stop_requests):
            await task


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
