"""Dapr's resiliency policies applied (the model: config/resiliency.py; docs/resiliency.md).

One `Resiliency` per sidecar, built by the sidecar and handed to the Runtime, holds the state
the policies keep (a circuit breaker's counts) for each target. For a target it gives a `Policy`
(None when no policy applies, so the call is made as if there were no engine): a timeout per
try, a circuit breaker around each try, retries around the whole, in daprd's order
(pkg/resiliency/policy.go):

- the timeout cuts a try short (`asyncio.timeout`, no task or timer of its own) and counts as
  a failure of the try, which is retried;
- the breaker refuses a try at once while open, or while half-open once `maxRequests` probes
  are out; a refusal is never retried;
- retries are made for failures that mean the target is unwell: what each kind of target
  calls transient (`Outcomes`), or, for apps, the status codes the policy's `matching` names.

The same failures count against the breaker; any other error (a missing key, an etag
mismatch, an app's INVALID_ARGUMENT) is an answer, and counts as a success.

Components are reached through `guard`: the block cores get a thin proxy of each component
with an outbound policy (runtime/cores.py), whose coroutine methods run under it.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from layotto.config.resiliency import BreakerSpec, Counts, PolicyNames, ResiliencySpec, RetrySpec
from layotto.errors import BackendTimeoutError, BackendUnavailableError
from layotto.runtime.proxy import ComponentProxy

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

__all__ = [
    "COMPONENT_OUTCOMES",
    "OPEN_MESSAGE",
    "TIMEOUT_MESSAGE",
    "CircuitBreaker",
    "CircuitOpenError",
    "Outcomes",
    "Policy",
    "Resiliency",
    "State",
]

log = logging.getLogger("layotto.resiliency")

T = TypeVar("T")
C = TypeVar("C")

#: daprd's words: gobreaker's ErrOpenState and ErrTooManyRequests, Go's context.DeadlineExceeded.
OPEN_MESSAGE = "circuit breaker is open"
TOO_MANY_MESSAGE = "too many requests"
TIMEOUT_MESSAGE = "context deadline exceeded"

#: cenkalti/backoff's exponential defaults, which daprd's retries keep (its resource has no
#: keys for them): the first interval, its growth, the jitter around it, the time to give up.
_INITIAL_INTERVAL = 0.5
_MULTIPLIER = 1.5
_RANDOMIZATION = 0.5
_MAX_ELAPSED = 15 * 60.0
#: Breakers kept for apps that no target names (default policies), least recently used first out.
_APP_BREAKERS_KEPT = 1024

#: Dapr's component type of each block, as default policy names spell it
#: (Default<Type>Component<Direction>RetryPolicy); blocks Dapr lacks go by their own name.
_DAPR_TYPES = {
    "state": "Statestore",
    "pubsub": "Pubsub",
    "bindings": "Binding",
    "secretstores": "Secretstore",
    "configuration": "Configuration",
    "lock": "Lock",
    "cryption": "Crypto",
}
#: Component methods no policy applies to: the lifecycle, and the long-lived subscriptions
#: (daprd runs Subscribe and Read outside its policies as well).
_UNGUARDED = frozenset({"init", "close", "ping", "subscribe", "read"})
#: Arguments a retry cannot hand to the component again: they are consumed by the first try.
_ONE_SHOT = (AsyncIterator, Iterator)


class CircuitOpenError(BackendUnavailableError):
    """A call a circuit breaker refused (open, or half-open with its probes out): UNAVAILABLE,
    as an unreachable backend, without the backend being asked."""

    def __init__(self, message: str, breaker: str = "") -> None:
        super().__init__(message)
        self.breaker = breaker


class State(enum.IntEnum):
    """A breaker's state, as `layotto_resiliency_breaker_state` reports it."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@functools.cache
def _families() -> tuple[Counter, Gauge, Counter]:
    """The engine's series, created once per process (tests run many sidecars)."""
    from prometheus_client import Gauge

    from layotto.observability import metrics

    return (
        metrics.counter("layotto_resiliency_retries_total", "Retries a resiliency policy made", ["policy", "target"]),
        Gauge(
            "layotto_resiliency_breaker_state",
            "State of a resiliency circuit breaker: 0 closed, 1 half-open, 2 open",
            ["breaker", "target"],
            registry=metrics.registry(),
        ),
        metrics.counter(
            "layotto_resiliency_timeouts_total", "Tries cut short by a resiliency timeout", ["policy", "target"]
        ),
    )


class CircuitBreaker:
    """sony/gobreaker's two-state machine with a half-open state between, as daprd runs it.

    Closed: every call goes through; a failure updates the counts and opens the breaker when
    the trip expression holds; with an `interval`, the counts are cleared every interval.
    Open: calls are refused until `timeout` has passed, then the breaker is half-open.
    Half-open: `maxRequests` calls go through, the others are refused; that many successes in a
    row close it, one failure opens it again. Transitions happen when a call comes (no timer);
    each state change starts a new generation, and an outcome of an earlier one is ignored."""

    __slots__ = ("_clock", "counts", "expiry", "generation", "name", "spec", "state", "target")

    def __init__(self, name: str, target: str, spec: BreakerSpec, clock: Callable[[], float]) -> None:
        self.name = name
        self.target = target
        self.spec = spec
        self._clock = clock
        self.state = State.CLOSED
        self.generation = 0
        self.counts = Counts()
        self.expiry = clock() + spec.interval if spec.interval > 0 else 0.0

    def current(self) -> State:
        """The state now (moving on from an open state whose timeout has passed)."""
        return self._current(self._clock())

    def peek(self) -> State:
        """The state now, changing nothing (for the gauge, read at scrape time)."""
        if self.state is State.OPEN and self.expiry < self._clock():
            return State.HALF_OPEN
        return self.state

    def admit(self, refuse: Callable[[str, str], BaseException]) -> int:
        """Let a call through (its generation), or raise `refuse(message, breaker)`."""
        state = self._current(self._clock())
        if state is State.OPEN:
            raise refuse(f"{OPEN_MESSAGE} (breaker '{self.name}')", self.name)
        if state is State.HALF_OPEN and self.counts.requests >= self.spec.max_requests:
            raise refuse(f"{TOO_MANY_MESSAGE} (breaker '{self.name}' is half-open)", self.name)
        self.counts.requests += 1
        return self.generation

    def record(self, generation: int, success: bool) -> None:
        now = self._clock()
        state = self._current(now)
        if generation != self.generation:
            return
        counts = self.counts
        if success:
            counts.total_successes += 1
            counts.consecutive_successes += 1
            counts.consecutive_failures = 0
            if state is State.HALF_OPEN and counts.consecutive_successes >= self.spec.max_requests:
                self._set(State.CLOSED, now)
            return
        counts.total_failures += 1
        counts.consecutive_failures += 1
        counts.consecutive_successes = 0
        if state is State.HALF_OPEN or (state is State.CLOSED and self.spec.trip(counts)):
            self._set(State.OPEN, now)

    def release(self, generation: int) -> None:
        """A call that ended neither way (cancelled): its place among the probes is free again."""
        if generation == self.generation and self.counts.requests > 0:
            self.counts.requests -= 1

    def _current(self, now: float) -> State:
        if self.state is State.CLOSED:
            if self.expiry and self.expiry < now:
                self._new_generation(now)
        elif self.state is State.OPEN and self.expiry < now:
            self._set(State.HALF_OPEN, now)
        return self.state

    def _set(self, state: State, now: float) -> None:
        before, self.state = self.state, state
        self._new_generation(now)
        log.info("circuit breaker %r changed state from %s to %s", self.name, before.label, state.label)

    def _new_generation(self, now: float) -> None:
        self.generation += 1
        self.counts.clear()
        if self.state is State.CLOSED:
            self.expiry = now + self.spec.interval if self.spec.interval > 0 else 0.0
        elif self.state is State.OPEN:
            self.expiry = now + self.spec.timeout
        else:
            self.expiry = 0.0


@dataclass(frozen=True, slots=True)
class Outcomes:
    """How one kind of target is told: which of its errors say it is unwell (a failure for the
    breaker), which of them a retry policy retries, and the errors its callers get for a
    timeout and for a breaker's refusal."""

    failed: Callable[[BaseException], bool]
    retriable: Callable[[BaseException, RetrySpec], bool]
    timed_out: Callable[[], BaseException]
    refused: Callable[[str, str], BaseException]


def component_failed(exc: BaseException) -> bool:
    """A component's errors that mean its backend is away or slow (every other one is its answer)."""
    return isinstance(exc, BackendUnavailableError | BackendTimeoutError | TimeoutError | ConnectionError)


#: Components: an unreachable or slow backend is retried, a timeout is BackendTimeoutError
#: (DEADLINE_EXCEEDED), a refusal CircuitOpenError (UNAVAILABLE).
COMPONENT_OUTCOMES = Outcomes(
    failed=component_failed,
    retriable=lambda exc, _: component_failed(exc),
    timed_out=lambda: BackendTimeoutError(TIMEOUT_MESSAGE),
    refused=CircuitOpenError,
)


class _Backoff:
    """dapr/kit's retry config as cenkalti/backoff runs it: `duration` between tries (constant),
    or an interval from 0.5 s growing 1.5 times a try up to `maxInterval`, each pause that
    interval ±50% (exponential, given up after 15 minutes in all, as daprd does). Unlike
    cenkalti, a pause never exceeds `maxInterval` (the documented bound), and the first
    interval is no longer than it either."""

    __slots__ = ("_random", "interval", "retry", "started", "tries")

    def __init__(self, retry: RetrySpec, now: float, rand: Callable[[], float]) -> None:
        self.retry = retry
        self.started = now
        self.tries = 0
        self.interval = min(_INITIAL_INTERVAL, retry.max_interval)
        self._random = rand

    def next(self, now: float) -> float | None:
        """The pause before the next try; None: no more tries."""
        retry = self.retry
        if 0 <= retry.max_retries <= self.tries:
            return None
        self.tries += 1
        if retry.policy == "constant":
            return retry.duration
        spread = 1 - _RANDOMIZATION + 2 * _RANDOMIZATION * self._random()
        pause = min(self.interval * spread, retry.max_interval)
        self.interval = min(self.interval * _MULTIPLIER, retry.max_interval)
        if now - self.started + pause > _MAX_ELAPSED:
            return None
        return pause


class Policy:
    """The timeout, retry and circuit breaker of one target (a component's direction, an app)."""

    __slots__ = (
        "_clock",
        "_random",
        "_retries_counted",
        "_sleep",
        "_timeouts_counted",
        "breaker",
        "name",
        "retry",
        "target",
        "timeout",
        "timeout_name",
    )

    def __init__(
        self,
        name: str,
        target: str,
        *,
        timeout: tuple[str, float] | None = None,
        retry: RetrySpec | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        #: The operation, as daprd's logs name it: "component[statestore] output", "endpoint[appB]".
        self.name = name
        #: The `target` label of the series: "component:statestore:outbound", "app:appB".
        self.target = target
        self.timeout_name: str = timeout[0] if timeout else ""
        self.timeout: float | None = timeout[1] if timeout else None
        self.retry = retry
        self.breaker = breaker
        self._clock = clock
        self._random = rand
        self._sleep = sleep
        self._retries_counted: Counter | None = None
        self._timeouts_counted: Counter | None = None

    def __repr__(self) -> str:
        return (
            f"Policy({self.name!r}, timeout={self.timeout}, retry={self.retry.name if self.retry else None},"
            f" breaker={self.breaker.name if self.breaker else None})"
        )

    async def run(self, operation: Callable[[], Awaitable[T]], outcomes: Outcomes, *, replayable: bool = True) -> T:
        """`operation()` under the policy; `replayable`: whether it may be called again (no
        retries otherwise: the breaker and the timeout still apply)."""
        breaker, timeout = self.breaker, self.timeout
        retry = self.retry if replayable else None
        backoff: _Backoff | None = None
        while True:
            generation = breaker.admit(outcomes.refused) if breaker is not None else 0
            ours = False
            try:
                if timeout is None:
                    result = await operation()
                else:
                    scope = asyncio.timeout(timeout)
                    try:
                        async with scope:
                            result = await operation()
                    except TimeoutError:
                        if not scope.expired():
                            raise
                        ours = True
                        self._count_timeout()
                        raise outcomes.timed_out() from None
            except asyncio.CancelledError:
                if breaker is not None:
                    breaker.release(generation)
                raise
            except Exception as exc:
                # What the policy would retry counts against the breaker too (an app's matched codes).
                retriable = ours or (self.retry is not None and outcomes.retriable(exc, self.retry))
                if breaker is not None:
                    breaker.record(generation, not (retriable or outcomes.failed(exc)))
                if retry is None or not retriable:
                    raise
                if backoff is None:
                    backoff = _Backoff(retry, self._clock(), self._random)
                pause = backoff.next(self._clock())
                if pause is None:
                    raise
                self._count_retry(retry)
                if backoff.tries == 1:
                    log.warning("error processing operation %s, retrying in %.3fs: %s", self.name, pause, exc)
                else:
                    log.debug("operation %s failed again, retry %d in %.3fs: %s", self.name, backoff.tries, pause, exc)
                await self._sleep(pause)
                continue
            if breaker is not None:
                breaker.record(generation, True)
            if backoff is not None:
                log.info("recovered processing operation %s after %d attempts", self.name, backoff.tries + 1)
            return result

    def _count_retry(self, retry: RetrySpec) -> None:
        if self._retries_counted is None:
            self._retries_counted = _families()[0].labels(retry.name, self.target)
        self._retries_counted.inc()

    def _count_timeout(self) -> None:
        if self._timeouts_counted is None:
            self._timeouts_counted = _families()[2].labels(self.timeout_name, self.target)
        self._timeouts_counted.inc()


class _Guarded(ComponentProxy):
    """A component as the block cores see it under its outbound policy: each coroutine method
    runs under the policy (the cores' checks of a component's kind are unchanged)."""

    _guarded_policy: Policy

    def __init__(self, component: object, policy: Policy) -> None:
        super().__init__(component)
        object.__setattr__(self, "_guarded_policy", policy)

    def _around(self, name: str, value: Any) -> Any | None:
        if name in _UNGUARDED or not inspect.iscoroutinefunction(value):
            return None
        return _guarded_method(value, object.__getattribute__(self, "_guarded_policy"))

    def __repr__(self) -> str:
        component, policy = object.__getattribute__(self, "_proxied"), object.__getattribute__(self, "_guarded_policy")
        return f"<{component!r} under {policy!r}>"


def _guarded_method(method: Callable[..., Awaitable[Any]], policy: Policy) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        replayable = not any(isinstance(a, _ONE_SHOT) for a in args) and not any(
            isinstance(v, _ONE_SHOT) for v in kwargs.values()
        )
        return await policy.run(functools.partial(method, *args, **kwargs), COMPONENT_OUTCOMES, replayable=replayable)

    return call


class Resiliency:
    """The resiliency policies of one sidecar, and the state they keep per target.

    Lookups follow daprd's: a target named in `targets` gets the policies it names and no
    others; any other target gets the default policies that exist, per kind, from the most
    specific name to the broadest (DefaultStatestoreComponentOutboundRetryPolicy,
    DefaultComponentOutboundRetryPolicy, DefaultComponentRetryPolicy, DefaultRetryPolicy; for
    apps DefaultAppRetryPolicy, DefaultRetryPolicy). Breakers are kept per target: per component
    and direction, per app id. `clock`, `rand` and `sleep` are for tests."""

    def __init__(
        self,
        spec: ResiliencySpec | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.spec = spec if spec is not None else ResiliencySpec()
        self._clock = clock
        self._random = rand
        self._sleep = sleep
        self._components: dict[tuple[str, str, str], Policy | None] = {}
        self._apps: dict[str, Policy | None] = {}
        self._default_apps: OrderedDict[str, Policy | None] = OrderedDict()
        self._guarded: dict[tuple[str, str], tuple[object, object]] = {}

    def __bool__(self) -> bool:
        return bool(self.spec)

    # ---- lookups ----

    def outbound(self, block: str, name: str) -> Policy | None:
        """The policy of the sidecar's calls to component `name` of `block`."""
        return self._component(block, name, "outbound")

    def inbound(self, block: str, name: str) -> Policy | None:
        """The policy of the sidecar's calls to the app for component `name` (its deliveries)."""
        return self._component(block, name, "inbound")

    def app(self, app_id: str) -> Policy | None:
        """The policy of invocations of app `app_id`."""
        if not self.spec:
            return None
        if app_id in self._apps:
            return self._apps[app_id]
        named = self.spec.apps.get(app_id)
        if named is not None:
            policy = self._apps[app_id] = self._build(named, app_id, f"endpoint[{app_id}]", f"app:{app_id}")
            return policy
        kept = self._default_apps
        if app_id in kept:
            kept.move_to_end(app_id)
            return kept[app_id]
        policy = kept[app_id] = self._build(self._defaults(["App"]), app_id, f"endpoint[{app_id}]", f"app:{app_id}")
        if len(kept) > _APP_BREAKERS_KEPT:
            kept.popitem(last=False)
        return policy

    def guard(self, block: str, name: str, component: C) -> C:
        """`component` under its outbound policy (itself when none applies); one proxy per
        component, so every core built on it shares the policy's breaker."""
        policy = self.outbound(block, name)
        if policy is None:
            return component
        found = self._guarded.get((block, name))
        if found is None or found[0] is not component:
            found = self._guarded[(block, name)] = (component, _Guarded(component, policy))
        return cast(C, found[1])

    # ---- building ----

    def _component(self, block: str, name: str, direction: str) -> Policy | None:
        key = (block, name, direction)
        if key in self._components:
            return self._components[key]
        policy = None
        if self.spec:
            target = self.spec.components.get(name)
            if target is not None:
                names = target.outbound if direction == "outbound" else target.inbound
            else:
                kind = _DAPR_TYPES.get(block, block.capitalize())
                way = direction.capitalize()
                names = self._defaults([f"{kind}Component{way}", f"Component{way}", "Component"])
            label = "output" if direction == "outbound" else "input"
            policy = self._build(names, name, f"component[{name}] {label}", f"component:{name}:{direction}")
        self._components[key] = policy
        return policy

    def _defaults(self, levels: list[str]) -> PolicyNames:
        """daprd's default policies for a target no `targets` entry names, kind by kind."""
        spec = self.spec

        def first(table: dict[str, Any], kind: str) -> str:
            for level in [*levels, ""]:
                name = f"Default{level}{kind}Policy"
                if name in table:
                    return name
            return ""

        return PolicyNames(
            timeout=first(spec.timeouts, "Timeout"),
            retry=first(spec.retries, "Retry"),
            circuit_breaker=first(spec.circuit_breakers, "CircuitBreaker"),
        )

    def _build(self, names: PolicyNames, instance: str, operation: str, target: str) -> Policy | None:
        spec = self.spec
        seconds = spec.timeouts.get(names.timeout) if names.timeout else None
        timeout = (names.timeout, seconds) if seconds else None
        retry = spec.retries.get(names.retry) if names.retry else None
        if retry is not None and retry.max_retries == 0:  # daprd: as if no retry policy were set
            retry = None
        breaker_spec = spec.circuit_breakers.get(names.circuit_breaker) if names.circuit_breaker else None
        if timeout is None and retry is None and breaker_spec is None:
            return None
        breaker = None
        if breaker_spec is not None:
            # daprd names a component's breaker <policy>-<component>.
            made = breaker = CircuitBreaker(f"{breaker_spec.name}-{instance}", target, breaker_spec, self._clock)
            _families()[1].labels(made.name, target).set_function(lambda: float(made.peek()))
        return Policy(
            operation,
            target,
            timeout=timeout,
            retry=retry,
            breaker=breaker,
            clock=self._clock,
            rand=self._random,
            sleep=self._sleep,
        )
