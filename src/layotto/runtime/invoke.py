"""Service invocation: deliver a call to this sidecar's app, or forward it to the sidecar of
another app found through name resolution.

Sidecar to sidecar is the public `Runtime/InvokeService` RPC, marked with the `HOP_HEADER`
metadata so that the receiving sidecar delivers to its own app and never forwards again.
The app is reached over the runtime's shared `AppChannel` (runtime/appchannel.py, which builds
on the request, response and error types defined here).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2

from layotto.components.base import Metadata
from layotto.components.nameresolution.base import NameResolutionFeature, NameResolver
from layotto.config.tls_grpc import grpc_channel_credentials
from layotto.errors import ComponentError, LayottoError
from layotto.observability import tracing
from layotto.runtime.resiliency import TIMEOUT_MESSAGE, Outcomes
from layotto.runtime.runtime import Runtime
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc

if TYPE_CHECKING:
    from layotto.config.resiliency import RetrySpec
    from layotto.runtime.appchannel import AppChannel

log = logging.getLogger("layotto.invoke")

#: Set on calls one sidecar forwards to another: deliver locally, never forward again.
HOP_HEADER = "layotto-invoke-hop"
#: Set (as trailing metadata) on errors a sidecar answers, to tell them from transport failures.
ORIGIN_HEADER = "layotto-invoke-origin"
#: Upstream's per-call timeout header, in milliseconds.
TIMEOUT_HEADER = "rpc_request_timeout"
DEFAULT_TIMEOUT = 3.0

_VALID_KEY = re.compile(r"^[0-9a-z_.\-]+$")
_VALID_VALUE = re.compile(r"^[\x20-\x7e]*$")
# Metadata that belongs to one hop's transport, not to the call.
_HOP_BY_HOP = frozenset(
    {
        "content-type",
        "content-length",
        "user-agent",
        "te",
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "trailer",
        "upgrade",
        "accept-encoding",
        "content-encoding",
        "proxy-connection",
        HOP_HEADER,
        ORIGIN_HEADER,
    }
)

Headers = list[tuple[str, str]]


def call_headers(pairs: Iterable[tuple[str, Any]]) -> Headers:
    """The headers of a call worth carrying to the next hop, as valid gRPC metadata.

    Drops transport headers (`:authority`, `grpc-*`, content-type, ...) and binary `-bin`
    values, which neither HTTP nor AppInvokeRequest.metadata can carry as text.
    """
    out: Headers = []
    for raw_key, value in pairs:
        key = raw_key.lower()
        if key.startswith((":", "grpc-")) or key.endswith("-bin") or key in _HOP_BY_HOP:
            continue
        if not isinstance(value, str) or not _VALID_KEY.match(key) or not _VALID_VALUE.match(value):
            continue
        out.append((key, value))
    return out


#: Credentials for the sidecars: carried between sidecars, never shown to an app.
_SIDECAR_ONLY = frozenset({"dapr-api-token"})


def joined(headers: Headers) -> dict[str, str]:
    """Headers for the app as a map; repeated keys joined with "," as upstream's RPCHeader does."""
    merged: dict[str, list[str]] = {}
    for key, value in headers:
        if key in _SIDECAR_ONLY:
            continue
        merged.setdefault(key, []).append(value)
    return {key: ",".join(values) for key, values in merged.items()}


@dataclass
class InvokeRequest:
    app_id: str
    method: str
    data: bytes = b""
    content_type: str = ""
    #: HTTP verb name from the caller's http_extension ("GET", "NONE", ...); "" when it sent none.
    verb: str = ""
    querystring: str = ""
    headers: Headers = field(default_factory=list)


@dataclass
class InvokeResponse:
    data: bytes = b""
    content_type: str = ""
    headers: Headers = field(default_factory=list)


def request_of(
    app_id: str, message: Any, verb_name: Callable[[Any], str], metadata: Iterable[tuple[str, Any]]
) -> InvokeRequest:
    """The InvokeRequest of either API's CommonInvokeRequest/InvokeRequest (same fields);
    `verb_name` names its HTTPExtension.Verb value, as upstream passes it on."""
    verb = ""
    if message.HasField("http_extension"):
        # The enum's name, so a caller that set no verb sends "NONE".
        verb = verb_name(message.http_extension.verb)
    return InvokeRequest(
        app_id=app_id,
        method=message.method,
        data=message.data.value,
        content_type=message.content_type,
        verb=verb,
        querystring=message.http_extension.querystring,
        headers=call_headers(metadata),
    )


def is_forwarded(metadata: Iterable[tuple[str, Any]]) -> bool:
    """Whether a call was forwarded by another sidecar (deliver it here, never forward again)."""
    return any(key == HOP_HEADER for key, _ in metadata)


class InvokeError(LayottoError):
    """A failed invocation, with the gRPC code to answer.

    `reached` is False when the request cannot have reached the app (the connection was
    refused): only then is it safe to try again.
    """

    def __init__(self, code: grpc.StatusCode, message: str, *, reached: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reached = reached


class OutOfTimeError(InvokeError):
    """The caller's deadline has passed: no try is left to make."""


def timeout_error(request: InvokeRequest, seconds: float) -> InvokeError:
    return InvokeError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"timeout after {round(seconds * 1000)} ms invoking method '{request.method}' of app '{request.app_id}'",
    )


def refused(details: str) -> bool:
    """gRPC's wording when no connection could be made, so no byte of the call was sent."""
    lowered = details.lower()
    return any(
        s in lowered
        for s in ("failed to connect to all addresses", "connection refused", "connections to all backends failing")
    )


def short_reason(details: str) -> str:
    return "connection refused" if "connection refused" in details.lower() else details


GRPC_CHANNEL_OPTIONS = [
    # A peer or app that comes back is found again within a second, not after minutes of backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


# ---- resiliency: how an app's failures are told (runtime/resiliency.py) ----

_TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
#: The HTTP statuses Dapr's docs call worth a retry: a timeout, too many requests, a server error.
_TRANSIENT_HTTP = frozenset({408, 429, *range(500, 600)})
#: How an HTTP app's non-200 answer reads, here and through the sidecar it was forwarded to
#: (runtime/appchannel.py): the status is known from it on both sides of a hop.
_HTTP_STATUS = re.compile(r"http response code (\d{3})\b")


def _http_status(exc: InvokeError) -> int | None:
    found = _HTTP_STATUS.match(exc.message)
    return int(found.group(1)) if found else None


def _app_failed(exc: BaseException) -> bool:
    if not isinstance(exc, InvokeError) or isinstance(exc, OutOfTimeError):
        return False
    status = _http_status(exc)
    return status in _TRANSIENT_HTTP if status is not None else exc.code in _TRANSIENT_CODES


def _app_retriable(exc: BaseException, retry: RetrySpec) -> bool:
    """As daprd's `matching`: with codes given for the answer's protocol (HTTP status of an HTTP
    app, else the gRPC code), those codes only; without, the transient failures."""
    if not isinstance(exc, InvokeError) or isinstance(exc, OutOfTimeError):
        return False
    status = _http_status(exc)
    if status is not None and retry.http_codes is not None:
        return status in retry.http_codes
    if status is None and retry.grpc_codes is not None:
        return exc.code.value[0] in retry.grpc_codes
    return _app_failed(exc)


#: Invocations: a timeout is DEADLINE_EXCEEDED and a refusal UNAVAILABLE, in daprd's words.
APP_OUTCOMES = Outcomes(
    failed=_app_failed,
    retriable=_app_retriable,
    timed_out=lambda: InvokeError(grpc.StatusCode.DEADLINE_EXCEEDED, TIMEOUT_MESSAGE),
    refused=lambda message, _: InvokeError(grpc.StatusCode.UNAVAILABLE, message, reached=False),
)


# ---- the engine ----


@dataclass
class InvokeSettings:
    """From the first name_resolution entry's metadata: invokeTimeout, invokeRetries,
    invokeRetryBackoff. Retries happen only when the call cannot have reached the app."""

    timeout: float = DEFAULT_TIMEOUT
    retries: int = 2
    retry_backoff: float = 0.05

    @classmethod
    def from_runtime(cls, rt: Runtime) -> InvokeSettings:
        specs = rt.config.components_of("nameresolution")
        if not specs:
            return cls()
        md = Metadata(specs[0].metadata, where=specs[0].source)
        return cls(
            timeout=md.get_duration("invokeTimeout", DEFAULT_TIMEOUT),
            retries=max(md.get_int("invokeRetries", 2), 0),
            retry_backoff=md.get_duration("invokeRetryBackoff", 0.05),
        )


def _own_address(rt: Runtime) -> str:
    """Where other sidecars reach this one: the internal listener when there is one, else the API port."""
    cfg = rt.config
    if cfg.internal_grpc_address:
        host, _, port = cfg.internal_grpc_address.rpartition(":")
    elif cfg.grpc_network == "unix":
        return f"unix:{cfg.grpc_address}"
    else:
        host, _, port = cfg.grpc_address.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        # Other sidecars cannot dial a wildcard; the advertised host is configurable.
        host = "127.0.0.1"
    return f"{host}:{port}"


class Invoker:
    """The invocation engine, one per sidecar, serving every API's InvokeService. `app_channel`
    (the sidecar's, which it closes) reaches this sidecar's app; None when the app takes none."""

    def __init__(self, rt: Runtime, app_channel: AppChannel | None) -> None:
        self.rt = rt
        self.settings = InvokeSettings.from_runtime(rt)
        self.app_channel = app_channel
        self.resolvers: list[NameResolver] = []
        self._peers: dict[str, tuple[grpc.aio.Channel, runtime_pb2_grpc.RuntimeStub]] = {}
        #: With peer TLS: this sidecar's certificate and the peers' CA, read again when rotated.
        tls = rt.config.peer_tls
        self._certs = tls.certificates() if tls is not None else None
        self._peer_options: list[tuple[str, Any]] = [*GRPC_CHANNEL_OPTIONS]
        #: Channels replaced after a rotation, closing once their calls in flight are done.
        self._retiring: set[asyncio.Task[None]] = set()
        if tls is not None and tls.server_name:
            self._peer_options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._turn = itertools.count()
        self._started = False
        self._registered: list[NameResolver] = []

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.resolvers = [c for c in self.rt.components("nameresolution").values() if isinstance(c, NameResolver)]
        if self.rt.app_id:
            address = self._advertised()
            for resolver in self.resolvers:
                if NameResolutionFeature.REGISTRY in resolver.features:
                    await resolver.register(self.rt.app_id, address)
                    self._registered.append(resolver)

    def _advertised(self) -> str:
        for spec in self.rt.config.components_of("nameresolution"):
            advertised = Metadata(spec.metadata).get_str("advertiseAddress")
            if advertised:
                return advertised
        return _own_address(self.rt)

    async def close(self) -> None:
        for resolver in self._registered:
            try:
                await resolver.deregister()
            except Exception:
                log.exception("withdrawing from name resolution failed")
        self._registered.clear()
        peers, self._peers = self._peers, {}
        for channel, _ in peers.values():
            await channel.close(None)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        self._started = False

    def timeout_of(self, request: InvokeRequest, time_remaining: float | None) -> float:
        timeout = self.settings.timeout
        for key, value in request.headers:
            if key == TIMEOUT_HEADER:
                try:
                    ms = int(value)
                except ValueError:
                    continue
                if ms > 0:
                    timeout = ms / 1000
        if time_remaining is not None:
            timeout = min(timeout, max(time_remaining, 0.0))
        return timeout

    async def invoke(
        self, request: InvokeRequest, *, time_remaining: float | None = None, forwarded: bool = False
    ) -> InvokeResponse:
        """Deliver `request`; raise InvokeError with the code to answer."""
        # The callee continues the caller's trace, with this sidecar's span as its parent.
        request.headers = tracing.inject(request.headers)
        engine = self.rt.resiliency
        # The calling sidecar applies the target app's policy; the one it forwards to does not again.
        policy = engine.app(request.app_id) if engine and not forwarded else None
        if policy is None:
            return await self._invoke(request, time_remaining, forwarded)
        deadline = None if time_remaining is None else time.monotonic() + time_remaining

        def attempt() -> Awaitable[InvokeResponse]:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise OutOfTimeError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the caller's deadline passed before app '{request.app_id}' answered",
                )
            return self._invoke(request, remaining, forwarded)

        return await policy.run(attempt, APP_OUTCOMES)

    async def _invoke(self, request: InvokeRequest, time_remaining: float | None, forwarded: bool) -> InvokeResponse:
        timeout = self.timeout_of(request, time_remaining)
        if request.app_id == self.rt.app_id or forwarded:
            if request.app_id != self.rt.app_id:
                raise InvokeError(
                    grpc.StatusCode.NOT_FOUND,
                    f"app id '{request.app_id}' is not served by this sidecar (its app is '{self.rt.app_id}')",
                )
            return await self._with_retries(request, timeout, self._deliver)
        if not self.resolvers:
            raise InvokeError(
                grpc.StatusCode.UNKNOWN,
                f"invoker not init: app id '{request.app_id}' is not this sidecar's app"
                f" ('{self.rt.app_id}') and no name_resolution component is configured",
            )
        return await self._with_retries(request, timeout, self._forward)

    async def _with_retries(
        self,
        request: InvokeRequest,
        budget: float,
        attempt: Callable[[InvokeRequest, float], Any],
    ) -> InvokeResponse:
        deadline = time.monotonic() + budget
        for tried in itertools.count():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timeout_error(request, budget)
            try:
                result: InvokeResponse = await attempt(request, remaining)
                return result
            except InvokeError as exc:
                if exc.reached or tried >= self.settings.retries:
                    raise
                pause = min(self.settings.retry_backoff * (2**tried), deadline - time.monotonic())
                if pause <= 0:
                    raise
                log.debug("retrying invocation of %r after: %s", request.app_id, exc.message)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _deliver(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        if self.app_channel is None:
            raise InvokeError(
                grpc.StatusCode.UNKNOWN,
                "invoker not init: this sidecar's app takes no invocations"
                " (set app.grpc_callback_port or app.http_port)",
            )
        return await self.app_channel.invoke(request, budget)

    async def _resolve(self, app_id: str) -> list[str]:
        for resolver in self.resolvers:
            try:
                addresses = await resolver.resolve(app_id)
            except ComponentError as exc:
                raise InvokeError(
                    grpc.StatusCode.UNAVAILABLE, f"name resolution of app id '{app_id}' failed: {exc}"
                ) from None
            if addresses:
                return addresses
        return []

    def _peer(self, address: str) -> runtime_pb2_grpc.RuntimeStub:
        found = self._peers.get(address)
        if found is None:
            if self._certs is None:
                channel = grpc.aio.insecure_channel(address, options=self._peer_options)
            else:
                credentials = grpc_channel_credentials(self._certs.material)
                channel = grpc.aio.secure_channel(address, credentials, options=self._peer_options)
            found = (channel, runtime_pb2_grpc.RuntimeStub(channel))
            self._peers[address] = found
        return found[1]

    async def _rotate(self) -> None:
        """After this sidecar's certificate or the peers' CA changed: new channels with them.
        The old ones close in the background once their calls in flight are done."""
        if self._certs is None or not self._certs.refresh():
            return
        peers, self._peers = self._peers, {}
        for channel, _ in peers.values():
            task = asyncio.create_task(channel.close(self.settings.timeout))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _forward(self, request: InvokeRequest, budget: float) -> InvokeResponse:
        addresses = await self._resolve(request.app_id)
        if not addresses:
            raise InvokeError(
                grpc.StatusCode.UNAVAILABLE,
                f"no sidecar serving app id '{request.app_id}' was found by name resolution",
            )
        address = addresses[next(self._turn) % len(addresses)]
        await self._rotate()
        message = runtime_pb2.CommonInvokeRequest(
            method=request.method, data=any_pb2.Any(value=request.data), content_type=request.content_type
        )
        if request.verb:
            message.http_extension.verb = runtime_pb2.HTTPExtension.Verb.Value(request.verb)
            message.http_extension.querystring = request.querystring
        deadline = time.monotonic() + budget - 0.001
        call: Any = self._peer(address).InvokeService(
            runtime_pb2.InvokeServiceRequest(id=request.app_id, message=message),
            metadata=(*request.headers, (HOP_HEADER, self.rt.app_id or "-")),
            timeout=budget,
        )
        try:
            reply = await call
            headers = await call.initial_metadata()
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            trailers: Any = exc.trailing_metadata() or ()
            from_sidecar = any(k == ORIGIN_HEADER for k, _ in trailers)
            if from_sidecar:
                raise InvokeError(code, details) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise timeout_error(request, budget) from None
            if code == grpc.StatusCode.CANCELLED:
                # An overloaded peer (or one shutting down) drops calls it cannot start in time:
                # to the caller that is a timeout or an unavailable sidecar, never CANCELLED,
                # which would read as if the caller itself had given up.
                if time.monotonic() >= deadline:
                    raise timeout_error(request, budget) from None
                raise InvokeError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the sidecar of app id '{request.app_id}' at {address} dropped the call: {details}",
                ) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                for resolver in self.resolvers:
                    resolver.invalidate(request.app_id)
                raise InvokeError(
                    code,
                    f"the sidecar of app id '{request.app_id}' at {address} is unreachable: {short_reason(details)}",
                    reached=not refused(details),
                ) from None
            raise InvokeError(code, f"the sidecar of app id '{request.app_id}' at {address}: {details}") from None
        return InvokeResponse(
            data=reply.data.value,
            content_type=reply.content_type,
            headers=call_headers(headers or ()),
        )
