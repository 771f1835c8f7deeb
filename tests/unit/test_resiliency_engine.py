"""The resiliency engine (runtime/resiliency.py) on a fake clock: retry counts and pauses,
timeouts, breaker transitions, the component proxy, default policies and the series."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from layotto.components.state.base import StateStore
from layotto.config.resiliency import BreakerSpec, ComponentTarget, PolicyNames, ResiliencySpec, RetrySpec, Trip
from layotto.errors import BackendTimeoutError, BackendUnavailableError, NotFoundError
from layotto.observability.metrics import registry
from layotto.runtime.resiliency import (
    COMPONENT_OUTCOMES,
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    Resiliency,
    State,
)


class FakeClock:
    """Time that moves only when a pause is taken (or a test moves it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class Flaky:
    """An operation failing `failures` times with `error`, then answering "ok"."""

    def __init__(self, failures: int, error: Callable[[], BaseException] = lambda: BackendUnavailableError("away")):
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error()
        return "ok"


def _policy(
    clock: FakeClock, *, retry: RetrySpec | None = None, breaker: BreakerSpec | None = None, **kw: Any
) -> Policy:
    made = CircuitBreaker(f"{breaker.name}-store", "component:store:outbound", breaker, clock) if breaker else None
    return Policy(
        "component[store] output",
        "component:store:outbound",
        retry=retry,
        breaker=made,
        clock=clock,
        sleep=clock.sleep,
        rand=kw.pop("rand", lambda: 0.5),
        **kw,
    )


# ---- retries ----


async def test_constant_retries_until_success() -> None:
    clock = FakeClock()
    policy = _policy(clock, retry=RetrySpec("fast", duration=0.05, max_retries=5))
    op = Flaky(3)
    assert await policy.run(op, COMPONENT_OUTCOMES) == "ok"
    assert op.calls == 4
    assert clock.pauses == [0.05, 0.05, 0.05]


async def test_max_retries_bounds_the_tries() -> None:
    clock = FakeClock()
    policy = _policy(clock, retry=RetrySpec("fast", duration=0.05, max_retries=2))
    op = Flaky(10)
    with pytest.raises(BackendUnavailableError, match="away"):
        await policy.run(op, COMPONENT_OUTCOMES)
    assert op.calls == 3 and len(clock.pauses) == 2


async def test_answers_that_are_not_failures_are_not_retried() -> None:
    clock = FakeClock()
    policy = _policy(clock, retry=RetrySpec("fast", duration=0.05, max_retries=5))
    op = Flaky(1, lambda: NotFoundError("no such key"))
    with pytest.raises(NotFoundError):
        await policy.run(op, COMPONENT_OUTCOMES)
    assert op.calls == 1 and clock.pauses == []


async def test_an_operation_that_cannot_be_replayed_is_tried_once() -> None:
    clock = FakeClock()
    policy = _policy(clock, retry=RetrySpec("fast", duration=0.05, max_retries=5))
    op = Flaky(1)
    with pytest.raises(BackendUnavailableError):
        await policy.run(op, COMPONENT_OUTCOMES, replayable=False)
    assert op.calls == 1


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
async def test_exponential_pauses_grow_and_stay_within_max_interval(rand: float) -> None:
    clock = FakeClock()
    policy = _policy(
        clock, retry=RetrySpec("exp", policy="exponential", max_interval=2.0, max_retries=10), rand=lambda: rand
    )
    await policy.run(Flaky(10), COMPONENT_OUTCOMES)
    intervals = [min(0.5 * 1.5**i, 2.0) for i in range(10)]
    expected = [min(interval * (0.5 + rand), 2.0) for interval in intervals]
    assert clock.pauses == pytest.approx(expected)
    assert all(p <= 2.0 for p in clock.pauses)
    assert clock.pauses[0] >= 0.25 and clock.pauses[0] <= 0.75


async def test_exponential_starts_no_longer_than_max_interval() -> None:
    clock = FakeClock()
    policy = _policy(
        clock, retry=RetrySpec("exp", policy="exponential", max_interval=0.05, max_retries=3), rand=lambda: 0.999
    )
    await policy.run(Flaky(3), COMPONENT_OUTCOMES)
    assert all(p <= 0.05 for p in clock.pauses) and len(clock.pauses) == 3


async def test_retrying_for_ever_gives_up_after_15_minutes_when_exponential() -> None:
    clock = FakeClock()
    policy = _policy(clock, retry=RetrySpec("exp", policy="exponential", max_interval=60.0, max_retries=-1))
    op = Flaky(10**9)
    with pytest.raises(BackendUnavailableError):
        await policy.run(op, COMPONENT_OUTCOMES)
    assert sum(clock.pauses) <= 15 * 60
    assert sum(clock.pauses) > 14 * 60
    # Constant retries for ever are for ever: 1000 failures in a row, then it answers.
    constant = _policy(clock, retry=RetrySpec("forever", duration=1.0, max_retries=-1))
    assert await constant.run(Flaky(1000), COMPONENT_OUTCOMES) == "ok"


# ---- timeouts ----


async def test_a_timeout_cuts_a_try_short_and_is_retried() -> None:
    clock = FakeClock()
    policy = _policy(clock, retry=RetrySpec("fast", duration=0.0, max_retries=2), timeout=("quick", 0.01))
    gate = asyncio.Event()
    calls = 0

    async def hangs_then_answers() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            await gate.wait()  # never set: only the timeout ends this try
        return "late"

    assert await policy.run(hangs_then_answers, COMPONENT_OUTCOMES) == "late"
    assert calls == 3
    labels = {"policy": "quick", "target": "component:store:outbound"}
    assert (registry().get_sample_value("layotto_resiliency_timeouts_total", labels) or 0) >= 2


async def test_a_timeout_without_retries_answers_deadline_exceeded_in_daprds_words() -> None:
    policy = _policy(FakeClock(), timeout=("quick", 0.01))
    with pytest.raises(BackendTimeoutError, match=r"^context deadline exceeded$"):
        await policy.run(asyncio.Event().wait, COMPONENT_OUTCOMES)


async def test_an_operations_own_timeout_error_is_not_the_policys() -> None:
    async def raises_timeout() -> None:
        raise TimeoutError("the driver's own")

    policy = _policy(FakeClock(), timeout=("quick", 5.0))
    with pytest.raises(TimeoutError, match="the driver's own"):
        await policy.run(raises_timeout, COMPONENT_OUTCOMES)


# ---- circuit breakers ----


def _breaker(clock: FakeClock, **kw: Any) -> CircuitBreaker:
    spec = BreakerSpec("cb", **kw)
    return CircuitBreaker("cb-store", "component:store:outbound", spec, clock)


async def test_breaker_opens_refuses_at_once_then_half_opens_and_closes() -> None:
    clock = FakeClock()
    policy = _policy(
        clock, breaker=BreakerSpec("cb", timeout=10.0, max_requests=2, trip=Trip("consecutiveFailures >= 3"))
    )
    breaker = policy.breaker
    assert breaker is not None
    failing = Flaky(10**9)
    for _ in range(3):
        with pytest.raises(BackendUnavailableError, match="away"):
            await policy.run(failing, COMPONENT_OUTCOMES)
    assert breaker.current() is State.OPEN and failing.calls == 3
    with pytest.raises(CircuitOpenError) as refused:
        await policy.run(failing, COMPONENT_OUTCOMES)
    assert str(refused.value) == "circuit breaker is open (breaker 'cb-store')"
    assert refused.value.breaker == "cb-store"
    assert failing.calls == 3, "an open breaker must not call the backend"

    clock.now += 10.5
    assert breaker.peek() is State.HALF_OPEN and breaker.state is State.OPEN  # peek changes nothing
    # Half-open: two probes may be out at once, a third is refused.
    gate = asyncio.Event()

    async def slow_success() -> str:
        await gate.wait()
        return "ok"

    probes = [asyncio.ensure_future(policy.run(slow_success, COMPONENT_OUTCOMES)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError, match=r"^too many requests \(breaker 'cb-store' is half-open\)$"):
        await policy.run(slow_success, COMPONENT_OUTCOMES)
    gate.set()
    assert await asyncio.gather(*probes) == ["ok", "ok"]
    assert breaker.current() is State.CLOSED


async def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, timeout=5.0, trip=Trip("consecutiveFailures > 0"))
    breaker.record(breaker.admit(CircuitOpenError), False)
    assert breaker.current() is State.OPEN
    clock.now += 6
    generation = breaker.admit(CircuitOpenError)
    assert breaker.state is State.HALF_OPEN
    breaker.record(generation, False)
    assert breaker.current() is State.OPEN
    clock.now += 4  # the open period starts again from the failed probe
    with pytest.raises(CircuitOpenError):
        breaker.admit(CircuitOpenError)


async def test_outcomes_of_an_earlier_generation_are_ignored() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, timeout=5.0, trip=Trip("consecutiveFailures >= 1"))
    first, second = breaker.admit(CircuitOpenError), breaker.admit(CircuitOpenError)
    breaker.record(first, False)
    assert breaker.current() is State.OPEN
    clock.now += 6
    breaker.record(second, True)  # late, from the closed generation: no say in the half-open one
    assert breaker.current() is State.HALF_OPEN and breaker.counts.total_successes == 0


async def test_interval_clears_the_counts_of_a_closed_breaker() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, interval=1.0, trip=Trip("totalFailures >= 3"))
    for _ in range(2):
        breaker.record(breaker.admit(CircuitOpenError), False)
    clock.now += 1.5
    breaker.record(breaker.admit(CircuitOpenError), False)
    assert breaker.current() is State.CLOSED and breaker.counts.total_failures == 1


async def test_a_cancelled_probe_frees_its_place() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, timeout=1.0, trip=Trip("consecutiveFailures >= 1"))
    breaker.record(breaker.admit(CircuitOpenError), False)
    clock.now += 2
    generation = breaker.admit(CircuitOpenError)
    breaker.release(generation)
    breaker.record(breaker.admit(CircuitOpenError), True)  # not "too many requests"
    assert breaker.current() is State.CLOSED


async def test_a_breaker_refusal_is_never_retried() -> None:
    clock = FakeClock()
    policy = _policy(
        clock,
        retry=RetrySpec("forever", duration=0.01, max_retries=-1),
        breaker=BreakerSpec("cb", timeout=60.0, trip=Trip("consecutiveFailures >= 2")),
    )
    op = Flaky(10**9)
    with pytest.raises(CircuitOpenError):
        await policy.run(op, COMPONENT_OUTCOMES)
    assert op.calls == 2 and len(clock.pauses) == 2  # two failures trip it; the third try is refused


async def test_answers_count_as_successes_for_the_breaker() -> None:
    clock = FakeClock()
    policy = _policy(clock, breaker=BreakerSpec("cb", trip=Trip("consecutiveFailures >= 1")))
    with pytest.raises(NotFoundError):
        await policy.run(Flaky(1, lambda: NotFoundError("missing")), COMPONENT_OUTCOMES)
    assert policy.breaker is not None and policy.breaker.current() is State.CLOSED


# ---- the engine: lookups, defaults, the proxy, the series ----


def _spec(**targets: Any) -> ResiliencySpec:
    return ResiliencySpec(
        timeouts={"general": 1.0, "DefaultTimeoutPolicy": 9.0},
        retries={
            "fast": RetrySpec("fast", duration=0.0, max_retries=3),
            "never": RetrySpec("never", max_retries=0),
            "DefaultRetryPolicy": RetrySpec("DefaultRetryPolicy", duration=0.0, max_retries=1),
            "DefaultComponentOutboundRetryPolicy": RetrySpec("DefaultComponentOutboundRetryPolicy", max_retries=2),
            "DefaultStatestoreComponentOutboundRetryPolicy": RetrySpec(
                "DefaultStatestoreComponentOutboundRetryPolicy", max_retries=4
            ),
            "DefaultAppRetryPolicy": RetrySpec("DefaultAppRetryPolicy", max_retries=5),
        },
        circuit_breakers={"cb": BreakerSpec("cb", trip=Trip("consecutiveFailures >= 2"))},
        **targets,
    )


def test_default_policies_go_from_the_most_specific_name_to_the_broadest() -> None:
    engine = Resiliency(_spec())
    state = engine.outbound("state", "any-store")
    assert state is not None and state.retry is not None
    assert state.retry.name == "DefaultStatestoreComponentOutboundRetryPolicy"
    assert state.timeout == 9.0 and state.breaker is None
    lock = engine.outbound("lock", "locks")
    assert lock is not None and lock.retry is not None and lock.retry.name == "DefaultComponentOutboundRetryPolicy"
    inbound = engine.inbound("pubsub", "ps")
    assert inbound is not None and inbound.retry is not None and inbound.retry.name == "DefaultRetryPolicy"
    app = engine.app("appX")
    assert app is not None and app.retry is not None and app.retry.name == "DefaultAppRetryPolicy"
    assert app.name == "endpoint[appX]" and app.target == "app:appX"


def test_a_named_target_gets_its_policies_and_no_defaults() -> None:
    spec = _spec(
        components={"store": ComponentTarget(outbound=PolicyNames(retry="fast", circuit_breaker="cb"))},
        apps={"b": PolicyNames(timeout="general"), "c": PolicyNames(retry="never")},
    )
    engine = Resiliency(spec)
    out = engine.outbound("state", "store")
    assert out is not None and out.retry is not None and out.retry.name == "fast"
    assert out.timeout is None and out.breaker is not None and out.breaker.name == "cb-store"
    assert out.name == "component[store] output" and out.target == "component:store:outbound"
    assert engine.inbound("state", "store") is None  # named, with nothing inbound: no defaults either
    app_b = engine.app("b")
    assert app_b is not None and app_b.retry is None and app_b.timeout == 1.0
    assert engine.app("c") is None  # maxRetries 0 is no retry policy at all
    # The same target, the same policy (and breaker) each time.
    assert engine.outbound("state", "store") is out and engine.app("b") is app_b


def test_no_policies_no_engine() -> None:
    engine = Resiliency()
    assert not engine
    assert engine.outbound("state", "s") is None and engine.app("a") is None


class _Store(StateStore):
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.closed = False
        self.seen: list[Any] = []

    async def get(self, request: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise BackendUnavailableError("redis at x is unavailable")
        return "value"

    async def set(self, request: Any) -> None:
        raise NotImplementedError

    async def delete(self, request: Any) -> None:
        raise NotImplementedError

    async def put_chunks(self, chunks: AsyncIterator[bytes]) -> None:
        self.calls += 1
        async for chunk in chunks:
            self.seen.append(chunk)
        raise BackendUnavailableError("failed half way")

    async def close(self) -> None:
        self.closed = True
        raise BackendUnavailableError("close is not guarded")

    def max_ttl_seconds(self) -> int:
        return 42


async def test_the_component_proxy_runs_coroutine_methods_under_the_policy() -> None:
    clock = FakeClock()
    engine = Resiliency(
        _spec(components={"store": ComponentTarget(outbound=PolicyNames(retry="fast"))}), clock=clock, sleep=clock.sleep
    )
    store = _Store(failures=2)
    guarded = engine.guard("state", "store", store)
    assert guarded is not store and isinstance(guarded, StateStore) and isinstance(guarded, _Store)
    assert guarded.max_ttl_seconds() == 42 and guarded.features == store.features
    assert await guarded.get(object()) == "value"
    assert store.calls == 3
    assert engine.guard("state", "store", store) is guarded  # one proxy, shared by every core

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"

    store.calls = 0
    with pytest.raises(BackendUnavailableError, match="half way"):
        await guarded.put_chunks(chunks())  # a consumed stream is not sent again
    assert store.calls == 1
    with pytest.raises(BackendUnavailableError, match="close is not guarded"):
        await guarded.close()
    assert store.closed
    guarded.marker = "set through"  # attributes are the component's
    assert store.marker == "set through"  # type: ignore[attr-defined]
    # A component without a policy is handed over as it is.
    other = _Store(0)
    assert Resiliency(_spec(components={"store": ComponentTarget()})).guard("state", "store", other) is other


async def test_retries_and_breaker_states_are_series() -> None:
    clock = FakeClock()
    spec = _spec(components={"metered": ComponentTarget(outbound=PolicyNames(retry="fast", circuit_breaker="cb"))})
    engine = Resiliency(spec, clock=clock, sleep=clock.sleep)
    policy = engine.outbound("state", "metered")
    assert policy is not None and policy.breaker is not None
    labels = {"breaker": "cb-metered", "target": "component:metered:outbound"}

    def state() -> float | None:
        return registry().get_sample_value("layotto_resiliency_breaker_state", labels)

    assert state() == 0.0
    with pytest.raises(CircuitOpenError):
        await policy.run(Flaky(10**9), COMPONENT_OUTCOMES)
    assert state() == 2.0
    retries = registry().get_sample_value(
        "layotto_resiliency_retries_total", {"policy": "fast", "target": "component:metered:outbound"}
    )
    assert retries == 2.0
    clock.now += 61
    assert state() == 1.0
