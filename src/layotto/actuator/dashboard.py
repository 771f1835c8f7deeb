"""The dashboard on the actuator's port (`/dashboard`): the components and their health, the
app's subscriptions with their delivery counters, API call, invocation and delivery rates over
the last minutes, and the effective config with its secrets masked.

It shows what the sidecar keeps anyway: the runtime's components and their pings (as readiness
pings them), the delivery service's subscriptions, and the Prometheus families served at
/metrics. A sampler copies those families' totals into a ring buffer every `interval` seconds,
so a rate is the difference of two totals and no call is counted a second time. The families
are the process's, as /metrics shows them (one sidecar per process).

The page is one HTML file (static/dashboard.html) with its script and styles inline: the
actuator is often reached where no CDN is, so the page draws its charts on <canvas> itself.

Routes, all GET: `/dashboard` (the page) and, as JSON, `/dashboard/api/overview`,
`/dashboard/api/components`, `/dashboard/api/subscriptions`, `/dashboard/api/rates`,
`/dashboard/api/config`."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import itertools
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from layotto import __version__
from layotto.config.model import ComponentSpec, RuntimeConfig
from layotto.runtime.delivery import DeliveryService
from layotto.tasks import stop_task

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from layotto.runtime.runtime import Runtime

log = logging.getLogger("layotto.actuator.dashboard")

#: What a masked value shows.
MASK = "******"
#: Seconds between two samples of the counters.
SAMPLE_INTERVAL = 2.0
#: Seconds of rates kept (and charted).
WINDOW = 600.0
#: Seconds a round of component pings is reused: several open pages, or one refreshing, ping
#: the backends once.
HEALTH_TTL = 2.0

_HANDLED = "layotto_grpc_server_handled_total"
_EVENTS = "layotto_pubsub_events_total"
#: Outcomes of a delivery, as runtime/delivery.py counts them.
OUTCOMES = ("delivered", "retried", "dropped", "expired", "dead_lettered", "nacked")
#: The outcomes that end an event's delivery without the app taking it (`retried` counts
#: attempts, which end in one of the others).
_UNDELIVERED = frozenset({"dropped", "expired", "dead_lettered", "nacked"})
#: The charted series, in the order the page draws them.
SERIES = ("api", "api_errors", "invocations", "invocation_errors", "delivered", "undelivered")

JSON = "application/json"
_PAGE = "static/dashboard.html"

Handler = Callable[[], Awaitable[tuple[int, str, bytes]]]

# ---- secrets ----

#: Words that make a metadata key's value secret wherever they stand in the key.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "credentials",
        "authorization",
        "apikey",
        "privatekey",
        "accesskey",
        "secretkey",
        "sas",
    }
)
#: Last words that name where a secret is, or which one, not the secret itself: `tokenFile`,
#: `secretStore`, `passwordEnv`, `accessKeyID`.
_POINTER_WORDS = frozenset(
    {"file", "path", "dir", "store", "ref", "refs", "name", "names", "id", "env", "type", "ttl", "url"}
)
#: Last words that are secret by themselves: `key`, `accessKey`, `encryptionKey`.
_KEY_WORDS = frozenset({"key", "keys"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
#: `scheme://user:password@host` and Go's MySQL DSN `user:password@tcp(host)`.
_USERINFO = re.compile(r"(^|//)([^\s:/@]*):([^\s@/]+)@")
#: `password=...` in a libpq or ADO.NET connection string.
_PASSWORD_PAIR = re.compile(r"(?i)\b(password|pwd)(\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s;]+)")


def _words(key: str) -> list[str]:
    return [word.lower() for part in re.split(r"[\W_]+", key) for word in _WORD.findall(part)]


def is_secret_key(key: str) -> bool:
    """Whether a metadata key's value is a secret (`redisPassword`, `apiToken`, `accessKey`,
    `client_secret`), judged by the words of its name."""
    words = _words(key)
    if not words:
        return False
    if words[-1] in _KEY_WORDS:
        return True
    if words[-1] in _POINTER_WORDS:
        return False
    joined = "".join(words)
    return any(word in _SECRET_WORDS for word in words) or any(w in joined for w in ("password", "secret", "token"))


def mask_text(value: str) -> str:
    """`value` with the password of a URL or connection string in it masked."""
    value = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", value)
    return _PASSWORD_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", value)


def masked(value: Any, key: str = "") -> Any:
    """A JSON-ready copy of `value` (a config value under `key`) with its secrets masked: the
    value of a secret-looking key, at any depth, and passwords inside URLs."""
    if key and is_secret_key(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [masked(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        shown = (f for f in dataclasses.fields(value) if f.repr)
        return {f.name: masked(getattr(value, f.name), f.name) for f in shown}
    if isinstance(value, str):
        return mask_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    # Parsed expressions (a breaker's trip, status code ranges) keep the text they were read from.
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else str(value)


def _component(spec: ComponentSpec) -> dict[str, Any]:
    metadata = masked(spec.metadata)
    refs: list[dict[str, str]] = []
    for ref in spec.extras.get("secret_ref") or []:
        entry = {str(k): str(v) for k, v in ref.items()}
        refs.append(entry)
        # The value the runtime copies in at start came from a secret store: whatever its key.
        metadata[entry.get("inject_as") or entry.get("sub_key") or entry.get("key", "")] = MASK
    extras = {k: masked(v, k) for k, v in spec.extras.items() if k != "secret_ref"}
    shown: dict[str, Any] = {"block": spec.block, "name": spec.name, "type": spec.type, "metadata": metadata}
    if refs:
        shown["secret_ref"] = refs
    if extras:
        shown["extras"] = extras
    shown["source"] = spec.source
    return shown


def effective_config(config: RuntimeConfig) -> dict[str, Any]:
    """The config the sidecar runs with (files and flags merged), secrets masked."""
    return {
        "source": config.source,
        "listeners": {
            "grpc": config.grpc_address,
            "grpc_network": config.grpc_network,
            "actuator": config.actuator_address,
            "dapr_http": config.dapr_http_address,
        },
        "app": masked(config.app),
        "api_token": MASK if config.api_token else None,
        "max_message_bytes": config.max_message_bytes,
        "shutdown_grace": config.shutdown_grace,
        "components": [_component(spec) for spec in config.components],
        "subscriptions": masked(config.subscriptions),
        "stream_filters": masked(config.stream_filters),
        "tracing": masked(config.tracing),
        "metrics": masked(config.metrics),
        "resiliency": masked(config.resiliency),
        "wasm": masked(config.wasm),
        "warnings": [mask_text(w) for w in config.warnings],
    }


# ---- counters ----


def _samples(registry: CollectorRegistry) -> Iterable[tuple[str, Mapping[str, str], float]]:
    # Only the two families' collectors run, not the process collectors beside them.
    for family in registry.restricted_registry([_HANDLED, _EVENTS]).collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def totals(registry: CollectorRegistry) -> dict[str, float]:
    """The charted series' totals now, from /metrics' families."""
    found = dict.fromkeys(SERIES, 0.0)
    for name, labels, value in _samples(registry):
        if name == _HANDLED:
            failed = labels.get("grpc_code") != "OK"
            found["api"] += value
            found["api_errors"] += value if failed else 0.0
            if labels.get("grpc_method") == "InvokeService":  # Layotto's and Dapr's
                found["invocations"] += value
                found["invocation_errors"] += value if failed else 0.0
        elif name == _EVENTS:
            outcome = labels.get("outcome", "")
            if outcome == "delivered":
                found["delivered"] += value
            elif outcome in _UNDELIVERED:
                found["undelivered"] += value
    return found


def delivery_counts(registry: CollectorRegistry) -> dict[tuple[str, str], dict[str, int]]:
    """(pubsub, topic) -> outcome -> deliveries, from `layotto_pubsub_events_total`."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for name, labels, value in _samples(registry):
        if name == _EVENTS:
            key = (labels.get("pubsub", ""), labels.get("topic", ""))
            counts = found.setdefault(key, dict.fromkeys(OUTCOMES, 0))
            outcome = labels.get("outcome", "")
            counts[outcome] = counts.get(outcome, 0) + int(value)
    return found


class RateHistory:
    """Totals sampled at an interval, in a ring buffer, and the per-second rates between them."""

    def __init__(self, size: int) -> None:
        #: (wall clock, monotonic clock, totals); one more than the rates it gives.
        self._samples: deque[tuple[float, float, dict[str, float]]] = deque(maxlen=size + 1)

    def add(self, wall: float, mono: float, values: dict[str, float]) -> None:
        self._samples.append((wall, mono, values))

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def since(self) -> float | None:
        """The wall clock time of the oldest sample: where the first rate's interval starts."""
        return round(self._samples[0][0], 3) if self._samples else None

    def rates(self) -> tuple[list[float], dict[str, list[float]]]:
        """The end time of each interval, and each series' rate over it (per second)."""
        times: list[float] = []
        series: dict[str, list[float]] = {name: [] for name in SERIES}
        samples = list(self._samples)
        for (_, mono0, before), (wall, mono, after) in itertools.pairwise(samples):
            elapsed = mono - mono0
            if elapsed <= 0:
                continue
            times.append(round(wall, 3))
            for name in SERIES:
                # A counter only grows: less than before is a registry started anew, not a negative rate.
                series[name].append(round(max(0.0, after.get(name, 0.0) - before.get(name, 0.0)) / elapsed, 4))
        return times, series


# ---- the dashboard ----


def _iso(wall: float) -> str:
    return _dt.datetime.fromtimestamp(wall, _dt.UTC).replace(microsecond=0).isoformat()


class Dashboard:
    """The page and its JSON over one runtime; `start` begins sampling, `stop` ends it."""

    def __init__(
        self,
        rt: Runtime,
        registry: CollectorRegistry | None = None,
        *,
        interval: float = SAMPLE_INTERVAL,
        window: float = WINDOW,
    ) -> None:
        self.rt = rt
        self.interval = interval
        self.window = window
        self._registry = registry
        self.history = RateHistory(max(1, round(window / interval)))
        self.started = time.time()
        self._task: asyncio.Task[None] | None = None
        self._health_lock = asyncio.Lock()
        self._pinged: tuple[float, dict[tuple[str, str], str]] | None = None
        self._page: bytes | None = None
        self._api: dict[str, Handler] = {
            "overview": self._overview,
            "components": self._components,
            "subscriptions": self._subscriptions,
            "rates": self._rates,
            "config": self._config,
        }

    @property
    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from layotto.observability.metrics import registry

            self._registry = registry()
        return self._registry

    async def start(self) -> None:
        self.sample()  # the baseline: the first interval's rate is measured from here
        self._task = asyncio.create_task(self._sampling(), name="dashboard-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    def sample(self) -> None:
        self.history.add(time.time(), time.monotonic(), totals(self.registry))

    async def _sampling(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sample()
            except Exception:  # a bad sample is a gap in the chart, not the end of sampling
                log.exception("sampling the counters for the dashboard failed")

    async def route(self, method: str, path: str) -> tuple[int, str, bytes]:
        """The actuator's handler for every path under /dashboard."""
        if method != "GET":
            return 405, "text/plain", b""
        if path in ("/dashboard", "/dashboard/"):
            return 200, "text/html; charset=utf-8", self.page()
        handler = self._api.get(path.removeprefix("/dashboard/api/")) if path.startswith("/dashboard/api/") else None
        if handler is None:
            return 404, JSON, b'{"error": "not found"}'
        return await handler()

    def page(self) -> bytes:
        if self._page is None:
            self._page = resources.files("layotto.actuator").joinpath(_PAGE).read_bytes()
        return self._page

    async def health(self) -> dict[tuple[str, str], str]:
        """Each component's ping, at most one round per HEALTH_TTL; the last known while the
        runtime is starting or stopping."""
        if self.rt.status != "UP":
            return dict(self.rt.component_health)
        async with self._health_lock:
            now = time.monotonic()
            if self._pinged is None or now - self._pinged[0] >= HEALTH_TTL:
                self._pinged = (time.monotonic(), await self.rt.health())
            return self._pinged[1]

    def _delivery(self) -> DeliveryService | None:
        return next((s for s in self.rt.services if isinstance(s, DeliveryService)), None)

    async def _overview(self) -> tuple[int, str, bytes]:
        cfg = self.rt.config
        delivery = self._delivery()
        body = {
            "version": __version__,
            "app_id": self.rt.app_id,
            "status": self.rt.status,
            "started": _iso(self.started),
            "uptime_seconds": round(time.time() - self.started, 1),
            "now": round(time.time(), 3),
            "listeners": {
                "grpc": cfg.grpc_address,
                "dapr_http": cfg.dapr_http_address,
                "actuator": cfg.actuator_address,
            },
            "app_healthy": delivery.health.healthy if delivery is not None else None,
            "components": len(cfg.components),
        }
        return _json(body)

    async def _components(self) -> tuple[int, str, bytes]:
        health = await self.health()
        rows = []
        for spec in self.rt.config.components:
            key = (spec.block, spec.name)
            # A block that is not built is skipped at start, with a warning: nothing to ping.
            status = health.get(key) or self.rt.component_health.get(key) or "INACTIVE"
            rows.append({"block": spec.block, "name": spec.name, "type": spec.type, "status": status})
        return _json({"status": self.rt.status, "components": rows})

    async def _subscriptions(self) -> tuple[int, str, bytes]:
        counts = delivery_counts(self.registry)
        delivery = self._delivery()
        if delivery is None:
            # No app channel, or no pub/sub component: declared subscriptions have nobody to deliver to.
            rows = []
            for spec in self.rt.config.subscriptions:
                routes = [spec.default_route, *(path for _, path in spec.rules)]
                rows.append(_subscription(spec.pubsub_name, spec.topic, routes, "no delivery", counts))
            return _json({"state": "no delivery", "app_healthy": None, "subscriptions": rows})
        opened = {(sub.pubsub_name, sub.topic) for sub, _, _ in delivery.subscriptions}
        rows = []
        for sub in delivery.wanted:
            key = (sub.pubsub_name, sub.topic)
            if key in opened:
                status = "subscribed"
            elif self.rt.get("pubsub", sub.pubsub_name) is None:
                status = "unknown pubsub"
            else:
                status = "closed" if delivery.ready.is_set() else "subscribing"
            routes = [sub.default_route, *(rule.path for rule in sub.rules)]
            row = _subscription(sub.pubsub_name, sub.topic, routes, status, counts)
            row["dead_letter_topic"] = sub.metadata.get("deadLetterTopic", "")
            rows.append(row)
        if not delivery.ready.is_set():
            state = "asking the app"
        elif opened:
            state = "open"
        else:
            state = "closed" if delivery.wanted else "none"
        return _json({"state": state, "app_healthy": delivery.health.healthy, "subscriptions": rows})

    async def _rates(self) -> tuple[int, str, bytes]:
        times, series = self.history.rates()
        body = {
            "interval": self.interval,
            "window": self.window,
            "now": round(time.time(), 3),
            "since": self.history.since,
            "t": times,
            "series": series,
        }
        return _json(body)

    async def _config(self) -> tuple[int, str, bytes]:
        return _json(effective_config(self.rt.config))


def _subscription(
    pubsub: str, topic: str, routes: list[str], status: str, counts: Mapping[tuple[str, str], dict[str, int]]
) -> dict[str, Any]:
    return {
        "pubsub": pubsub,
        "topic": topic,
        "routes": [r for r in routes if r],
        "status": status,
        "counters": counts.get((pubsub, topic)) or dict.fromkeys(OUTCOMES, 0),
    }


def _json(body: object) -> tuple[int, str, bytes]:
    return 200, JSON, json.dumps(body).encode()
