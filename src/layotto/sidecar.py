"""Runs the sidecar: components, the gRPC server, the actuator, and graceful shutdown.

The assembly point, above every layer (see `[tool.importlinter]` in pyproject.toml): it builds
the runtime, the one tracer, the APIs and their interceptors, and wires them together.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import grpc

from layotto import __version__
from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError
from layotto.runtime.appchannel import open_app_channel
from layotto.runtime.apphealth import AppHealth
from layotto.runtime.invoke import Invoker
from layotto.runtime.resiliency import Resiliency
from layotto.runtime.runtime import Runtime, ServiceFactory

if TYPE_CHECKING:
    from layotto.actuator.dashboard import Dashboard
    from layotto.api.dapr_http import DaprHttpApi
    from layotto.api.peer import PeerListener
    from layotto.components.delay_queue.base import DelayScheduler
    from layotto.config.tls import ServerTls
    from layotto.observability.tracing.tracer import Tracer
    from layotto.runtime.appchannel import AppChannel, AppChannelFactory
    from layotto.runtime.registry import ComponentRegistry
    from layotto.runtime.reload import Reloader
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
    from layotto.api.extension.helloworld import register as register_greeter
    from layotto.api.health import register as register_health
    from layotto.api.layotto import register as register_layotto
    from layotto.api.layotto.lifecycle import register as register_lifecycle

    return [
        register_layotto(server, rt, invoker),
        register_lifecycle(server, rt),
        register_greeter(server, rt),
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


async def _start_reloader(rt: Runtime, delay_schedulers: dict[str, DelayScheduler]) -> Reloader | None:
    """Hot reload of the component files, when the config asks for it (None otherwise); a
    reloaded pub/sub component gets its own delay scheduler, in the DelayQueue API's table."""
    from layotto.components.delay_queue.base import scheduler_for
    from layotto.components.pubsub.base import PubSub
    from layotto.runtime.reload import Reloader

    async def swap_delay_scheduler(block: str, name: str, component: object) -> None:
        if block != "pubsub":
            return
        old = delay_schedulers.pop(name, None)
        if old is not None:
            await _stop_delay_schedulers({name: old})
        spec = rt.spec(block, name)
        if isinstance(component, PubSub) and spec is not None:
            scheduler = scheduler_for(component, name, spec.metadata)
            if scheduler is not None:
                await scheduler.start()
                delay_schedulers[name] = scheduler

    reloader = Reloader(rt, hooks=[swap_delay_scheduler])
    if not reloader.enabled:
        return None
    await reloader.start()
    return reloader


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
    from layotto.observability.logging import AccessLogInterceptor

    # Metrics whenever an actuator serves /metrics, the tracer's spans when tracing is on.
    observed = telemetry(config, tracer)
    # The access log outermost, so that it sees refused calls too and times the whole call.
    access = [AccessLogInterceptor()] if config.access_log else []
    # The token check first: a refused call must not count against flow control, nor be traced.
    return [*access, *auth.interceptors(config.api_token), *observed, *filters.from_config(config.stream_filters)]


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
    from layotto.observability.logging import http_middleware

    observed = http_middleware({c.name for c in config.components}, access_log=config.access_log)
    http = build(
        rt,
        invoker,
        config.dapr_http_address,
        metadata=shared or DaprMetadata(rt),
        shutdown=request_stop,
        middlewares=[observed],
        ssl_context=_http_ssl_context(config),
    )
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


def _port_adder(server: grpc.aio.Server, tls: ServerTls | None) -> Callable[[str], int]:
    """How `server` binds an address: in plaintext, or with `tls` (its files are read here: a
    problem with them is a ConfigError; a rotated certificate is served from the next handshake)."""
    if tls is None:
        return server.add_insecure_port
    from layotto.config.tls_grpc import grpc_server_credentials

    certs = tls.certificates()
    for warning in certs.material.warnings:
        log.warning("%s", warning)
    credentials = grpc_server_credentials(certs, mutual=tls.mutual)
    log.info("the gRPC APIs serve TLS%s", " and require client certificates" if tls.mutual else "")
    return lambda target: server.add_secure_port(target, credentials)


def _http_ssl_context(config: RuntimeConfig) -> ssl.SSLContext | None:
    """The TLS of Dapr's HTTP API: the gRPC APIs' (None: plaintext)."""
    if config.tls is None:
        return None
    from layotto.config.tls import http_server_context

    return http_server_context(config.tls.certificates(), mutual=config.tls.mutual)


def _peer_listener(
    cfg: RuntimeConfig, options: list[tuple[str, Any]], interceptors: list[grpc.aio.ServerInterceptor[Any, Any]]
) -> PeerListener | None:
    """daprd's internal gRPC listener, bound, when `internal_grpc_address` asks for one; the
    address advertised to name resolution becomes its (with the port it got)."""
    if not cfg.internal_grpc_address:
        return None
    from layotto.api.peer import PeerListener

    peer = PeerListener(
        cfg.internal_grpc_address, cfg.peer_tls, options=options, interceptors=interceptors, source=cfg.source
    )
    cfg.internal_grpc_address = peer.address
    return peer


async def _listen(start: Callable[[], Awaitable[None]], what: str, address: str, source: str) -> None:
    """Start a listener; an address that cannot be had is a ConfigError naming it."""
    try:
        await start()
    except OSError as exc:
        raise ConfigError(f"{what} cannot listen on {address}: {exc.strerror or exc}", source) from None


def _bind_grpc(cfg: RuntimeConfig, add_port: Callable[[str], int]) -> tuple[int, list[str]]:
    """Bind the gRPC APIs on `grpc_address` and each of `grpc_extra_addresses` with `add_port`
    (the server's add_*_port); returns the port and the addresses bound. A port 0 is the one
    the first bind got, on every address. As daprd, an address that cannot be had is a warning
    while another one is bound; none bound is a ConfigError naming them."""
    if cfg.grpc_network == "unix":
        return add_port(f"unix:{cfg.grpc_address}"), [f"unix:{cfg.grpc_address}"]
    port, bound_to, failed = 0, list[str](), list[tuple[str, str]]()
    for address in (cfg.grpc_address, *cfg.grpc_extra_addresses):
        host, _, wanted = address.rpartition(":")
        target = f"{host}:{port}" if port and wanted == "0" else address
        try:
            bound, detail = add_port(target), "address in use or not available"
        except RuntimeError as exc:
            bound, detail = 0, str(exc)
        if bound == 0:
            failed.append((target, detail))
            continue
        port = port or bound
        bound_to.append(f"{host}:{port}")
    if port == 0:
        raise ConfigError(f"cannot listen on {', '.join(t for t, _ in failed)}: {failed[0][1]}", cfg.source)
    for target, detail in failed:
        log.warning("the gRPC APIs cannot listen on %s (%s); they listen on the other addresses", target, detail)
    return port, bound_to


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


def _config_source(cfg: RuntimeConfig) -> str:
    """Where the config came from: the file and the Dapr resources folder, as given."""
    sources = [cfg.source, cfg.resources_path]
    return " + ".join(dict.fromkeys(s for s in sources if s)) or "-"


def _loaded(rt: Runtime) -> list[tuple[str, str, str]]:
    """(block, name, type) of every component started."""
    specs = rt.config.components
    return [(spec.block, spec.name, spec.type) for spec in specs if rt.get(spec.block, spec.name) is not None]


class Sidecar:
    def __init__(self, config: RuntimeConfig, registry: ComponentRegistry | None = None) -> None:
        """`registry`: the component types to make components of (None: the built-in ones and
        the pluggable components of the default socket folders)."""
        self.config = config
        # One engine: the cores, event delivery and invocation share each target's breaker.
        self.rt = Runtime(
            config, app_channels=_app_channels(), resiliency=Resiliency(config.resiliency), registry=registry
        )
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
        #: The actuator's /dashboard; it samples the counters once the sidecar serves.
        self.dashboard: Dashboard | None = None
        self.dapr_http: DaprHttpApi | None = None
        self.wasm: WasmServer | None = None
        #: daprd's internal gRPC listener (`internal_grpc_address`): other sidecars' forwarded calls.
        self.peer: PeerListener | None = None
        #: Hot reload of the component files (runtime/reload.py), when the config asks for it.
        self.reloader: Reloader | None = None
        # Before any core is built: a core then follows the components a reload swaps.
        self.rt.swappable = bool(config.resources_path or config.watch_config)
        self.port = 0
        #: "host:port" of each address the gRPC APIs listen on ("unix:PATH" on a socket).
        self.grpc_addresses: list[str] = []
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
            from layotto.actuator.dashboard import Dashboard

            self.dashboard = Dashboard(self.rt)
            actuator.prefixes["/dashboard"] = self.dashboard.route
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
        try:
            self.port, self.grpc_addresses = _bind_grpc(cfg, _port_adder(server, cfg.tls))
        except ConfigError:
            if actuator is not None:
                await actuator.stop()
            raise
        self.server = server
        try:
            self.peer = _peer_listener(cfg, options, self.interceptors)
            self.app_channel = open_app_channel(self.rt)
            self.app_health = AppHealth(self.app_channel, cfg.app.health_check)
            await self.app_health.start()
            # Pluggable components first: their sockets' names are component types.
            for warning in await self.rt.registry.discover():
                log.warning("%s", warning)
            await self.rt.start(_service_factories(self.app_channel, self.tracer, self.app_health))
            self.invoker = Invoker(self.rt, self.app_channel)
            if self.peer is not None:
                self.peer.serve(self.invoker)
            await self.invoker.start()
            self.delay_schedulers = await _start_delay_schedulers(self.rt)
            # The APIs are built on the started components (each block's core binds them), and
            # registered before the server takes its first call.
            self.apis = _register_apis(server, self.rt, self.invoker, self.delay_schedulers, self.request_stop)
            for api in self.apis:
                await api.start_api()
            self.dapr_http = await _start_dapr_http(cfg, self.rt, self.invoker, self.apis, self.request_stop)
            self.wasm = await _start_wasm(self.rt, self.invoker, self.tracer)
            self.reloader = await _start_reloader(self.rt, self.delay_schedulers)
        except BaseException:
            await self._close_parts()
            if actuator is not None:
                await actuator.stop()
            raise
        await server.start()
        if self.peer is not None:
            await self.peer.start()
        if self.dashboard is not None:
            await self.dashboard.start()
        for warning in cfg.warnings:
            log.warning("%s", warning)
        from layotto.observability.logging import start_banner

        message, extra = start_banner(
            __version__, self.rt.app_id, _config_source(cfg), self.listeners(), _loaded(self.rt)
        )
        log.info("%s", message, extra=extra)

    async def stop(self) -> None:
        """Drain, then stop: probes first (readiness 503, gRPC health NOT_SERVING), then open
        streams end (UNAVAILABLE "the sidecar is shutting down"), then the listeners stop taking
        calls and the unary ones in flight finish (up to the grace period), then all closes."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.rt.status = "DOWN"
        reloader, self.reloader = self.reloader, None
        if reloader is not None:  # first: nothing is swapped while the parts stop
            await reloader.stop()
        await self._drain_apis()
        await self._stop_wasm()
        await self._stop_dapr_http()
        # The internal listener too: calls other sidecars forward finish as the app's own do.
        listeners = (self.server, self.peer)
        await asyncio.gather(*(s.stop(self.config.shutdown_grace) for s in listeners if s is not None))
        await self._close_parts()
        await _close_interceptors(self.interceptors)
        if self.tracer is not None:  # flushes the exporters (never raises): every span is finished by now
            await self.tracer.close()
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.actuator is not None:
            from layotto.actuator.http import Actuator

            assert isinstance(self.actuator, Actuator)
            await self.actuator.stop()
        log.info("layotto stopped")

    def listeners(self) -> list[tuple[str, list[str]]]:
        """(what, its addresses) of every listener up, for the start banner."""
        found = [("gRPC API (the Dapr gRPC API shares this port)", self.grpc_addresses)]
        if self.dapr_http is not None:
            found.append(("Dapr HTTP API", self.dapr_http.addresses))
        if self.actuator is not None:
            from layotto.actuator.http import Actuator

            assert isinstance(self.actuator, Actuator)
            host = f"[{self.actuator.host}]" if ":" in self.actuator.host else self.actuator.host
            what = "actuator (health, info, logger, /metrics" + (", /dashboard)" if self.dashboard else ")")
            found.append((what, [f"{host}:{self.actuator.port}"]))
        if self.peer is not None:
            found.append(("internal gRPC API (calls other sidecars forward)", [self.peer.address]))
        if self.wasm is not None:
            found += [("WASM functions", [listener.address]) for listener in self.wasm.listeners]
            if self.wasm.admin is not None:
                found.append(("WASM management", [self.wasm.admin.address]))
        return found

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
        if self.peer is not None:  # a start that failed: no call came yet
            await self.peer.stop(None)
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
