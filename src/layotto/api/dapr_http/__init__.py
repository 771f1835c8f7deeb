"""Dapr's HTTP API (daprd's `/v1.0/...` endpoints), served with aiohttp over the same block
cores as the gRPC APIs: one store, three APIs.

Each block's endpoints are a part (`state.py`, `pubsub.py`, ...) over the core `runtime/cores.py`
builds, answering problems from this API's `answers.toml` (daprd's statuses, error codes and
wording); the sidecar's own endpoints (health, metadata, shutdown) and service invocation sit
beside them. `sidecar.py` builds it (`build`), starts it once the APIs are registered and stops
it first, so calls in flight finish before the components close.
"""

from __future__ import annotations

import hmac
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from layotto.api.dapr.metadata import DaprMetadata
from layotto.api.dapr.pubsub import DaprPubSubApi
from layotto.api.dapr_http.answers import RequestProblem, answer, load
from layotto.api.dapr_http.bindings import BindingsApi
from layotto.api.dapr_http.common import Handler, Part, error_reply
from layotto.api.dapr_http.configuration import ConfigurationApi
from layotto.api.dapr_http.health import HealthApi, ShutdownApi
from layotto.api.dapr_http.invoke import InvokeApi
from layotto.api.dapr_http.lock import TryLockApi, UnlockApi
from layotto.api.dapr_http.metadata import MetadataApi
from layotto.api.dapr_http.pubsub import PubSubApi
from layotto.api.dapr_http.secrets import SecretsApi
from layotto.api.dapr_http.state import StateApi
from layotto.core.problems import Problem
from layotto.runtime.cores import bindings_core, configuration_core, lock_core, pubsub_core, secrets_core, state_core
from layotto.runtime.invoke import Invoker
from layotto.runtime.runtime import Runtime

__all__ = ["DaprHttpApi", "build"]

log = logging.getLogger("layotto.api.dapr_http")

TOKEN_HEADER = "dapr-api-token"
#: What daprd serves without the API token (GET only).
OPEN_PATHS = frozenset({"v1.0/healthz", "v1.0/healthz/outbound"})


def _paths(path: str) -> list[str]:
    # daprd strips one trailing slash before routing (`POST /v1.0/state/store/` saves); a
    # pattern that ends in a catch-all takes the slash already.
    return [path] if path.endswith((".*}", ".+}")) else [path, path + "/"]


class DaprHttpApi:
    """The listener: daprd's routes over `parts`, the API token check, and invocation as the
    fallback of every path no part serves."""

    def __init__(
        self,
        address: str,
        parts: Sequence[Part[Any]],
        fallback: Handler,
        *,
        token: str | None,
        refuse_token: Callable[[], web.Response],
        max_body: int,
        grace: float,
        extra_addresses: Sequence[str] = (),
        middlewares: Sequence[Middleware] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        #: More hosts to listen on, on the same port (daprd's several --dapr-listen-addresses).
        self.extra_hosts = [a.rpartition(":")[0].strip("[]") for a in extra_addresses]
        #: "host:port" of each address it listens on, once started.
        self.addresses: list[str] = []
        self._middlewares = list(middlewares)
        #: TLS of the listener (the gRPC APIs'); None: plaintext.
        self._ssl_context = ssl_context
        self.parts = parts
        self._fallback = fallback
        self._token = token.encode() if token else None
        self._refuse_token = refuse_token
        self._max_body = max_body
        self._grace = grace
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        # The given ones first: an access log sees the calls the token check refuses too.
        middlewares: list[Middleware] = list(self._middlewares)
        if self._token is not None:
            middlewares.append(self._check_token)
        middlewares.append(_unexpected)
        app = web.Application(client_max_size=self._max_body, middlewares=middlewares)
        for part in self.parts:
            for route in part.routes():
                for path in _paths(route.path):
                    for method in route.methods:
                        app.router.add_route(method, path, route.handler)
        app.router.add_route("*", "/{tail:.*}", self._fallback)
        return app

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(TOKEN_HEADER, "")
        # Constant time, so the token cannot be guessed byte by byte from response times.
        if self._token is not None and hmac.compare_digest(given.encode(), self._token):
            return await handler(request)
        if request.method == "GET" and request.path.strip("/") in OPEN_PATHS:
            return await handler(request)
        return self._refuse_token()

    async def start(self) -> None:
        """Listen on every host; as daprd, a host that cannot be had is a warning while another
        one is bound. None bound raises the first OSError, with nothing left to undo."""
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=self._grace)
        await runner.setup()
        failed: list[tuple[str, OSError]] = []
        try:
            for host in dict.fromkeys((self.host, *self.extra_hosts)):
                try:
                    await web.TCPSite(runner, host, self.port, ssl_context=self._ssl_context).start()
                except OSError as exc:
                    failed.append((host, exc))
                    continue
                if self.port == 0:  # the port the first bind got, on every host
                    self.port = int(runner.addresses[-1][1])
                self.addresses.append(f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}")
            if not self.addresses:
                raise failed[0][1]
        except BaseException:
            await runner.cleanup()
            raise
        for host, error in failed:
            log.warning("Dapr HTTP API cannot listen on %s:%d (%s); it listens on the others", host, self.port, error)
        self._runner = runner
        log.info("Dapr HTTP API listening on %s", ", ".join(self.addresses))

    async def stop(self) -> None:
        """Take no more calls, let those in flight finish (up to the grace period), then stop
        what the parts run (configuration subscriptions)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for part in self.parts:
            try:
                await part.stop()
            except Exception:
                log.exception("stopping a Dapr HTTP API part failed")


@web.middleware
async def _unexpected(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        # daprd answers an error it has no code for with its generic one.
        log.exception("Dapr HTTP API: %s %s failed", request.method, request.path)
        return error_reply(500, "ERROR", str(exc))


def build(
    rt: Runtime,
    invoker: Invoker,
    address: str,
    *,
    metadata: DaprMetadata,
    shutdown: Callable[[], None],
    middlewares: Sequence[Middleware] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> DaprHttpApi:
    """Dapr's HTTP API on `address` over the started runtime's components; `metadata` is the
    sidecar's Dapr metadata (shared with Dapr's gRPC API), `shutdown` asks the sidecar to stop,
    `middlewares` run around every request (the sidecar's log context and access log),
    `ssl_context` is the listener's TLS (None: plaintext)."""
    book = load()
    request = book["request"]

    def table(block: str) -> dict[Any, Any]:
        return {**request, **book[block]}

    locks = lock_core(rt, book.checks("lock"))
    invoke = InvokeApi(invoker, request)
    parts: list[Part[Any]] = [
        HealthApi(rt, request),
        MetadataApi(metadata, request),
        ShutdownApi(shutdown, request),
        StateApi(state_core(rt, book.checks("state")), table("state")),
        PubSubApi(pubsub_core(rt, book.checks("pubsub"), DaprPubSubApi.style(rt.app_id)), table("pubsub")),
        BindingsApi(bindings_core(rt, book.checks("bindings")), table("bindings")),
        SecretsApi(secrets_core(rt), table("secrets")),
        ConfigurationApi(configuration_core(rt), table("configuration"), invoker),
        TryLockApi(locks, table("lock")),
        UnlockApi(locks, table("unlock")),
        invoke,
    ]
    return DaprHttpApi(
        address,
        parts,
        invoke.invoke,
        token=rt.config.api_token,
        refuse_token=lambda: error_reply(*answer(request, Problem(RequestProblem.BAD_TOKEN))),
        max_body=rt.config.max_message_bytes,
        grace=rt.config.shutdown_grace,
        extra_addresses=rt.config.dapr_http_extra_addresses,
        middlewares=middlewares,
        ssl_context=ssl_context,
    )
