"""Dapr's resiliency policies: the `Resiliency` resource of a resources folder, and the same
`spec` under a top-level `resiliency` key of a Layotto JSON config.

    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: myresiliency}
    spec:
      policies:
        timeouts: {general: 5s}
        retries:
          fast: {policy: constant, duration: 50ms, maxRetries: 3}
          patient: {policy: exponential, maxInterval: 15s, maxRetries: -1,
                    matching: {httpStatusCodes: "429,500-599", gRPCStatusCodes: "4,14"}}
        circuitBreakers:
          simpleCB: {maxRequests: 1, interval: 8s, timeout: 45s, trip: consecutiveFailures >= 5}
      targets:
        apps: {appB: {timeout: general, retry: patient, circuitBreaker: simpleCB}}
        components:
          statestore: {outbound: {retry: fast, circuitBreaker: simpleCB}}
          pubsub: {inbound: {retry: fast}}
    scopes: [app1]

Values are read as daprd reads them (pkg/resiliency, dapr/kit retry, sony/gobreaker): durations
are Go durations or a bare number of milliseconds, `maxRetries: -1` retries forever, a missing
`trip` is `consecutiveFailures > 5`. Stricter than daprd, which logs a bad policy and starts
without it: every mistake here is a ConfigError naming where, a target naming a policy that no
document defines included. This module holds the model and its checks; runtime/resiliency.py
applies it.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from layotto.config import durations
from layotto.config.schema import At, Obj, describe, suggest
from layotto.errors import ConfigError

__all__ = [
    "DEFAULT_TRIP",
    "BreakerSpec",
    "CodeRanges",
    "ComponentTarget",
    "Counts",
    "PolicyNames",
    "ResiliencySpec",
    "RetrySpec",
    "Trip",
    "check_references",
    "merge",
    "parse_spec",
    "resiliency_resource",
]

#: gobreaker's ReadyToTrip when none is given.
DEFAULT_TRIP = "consecutiveFailures > 5"
#: dapr/kit retry.DefaultConfig.
DEFAULT_DURATION = 5.0
DEFAULT_MAX_INTERVAL = 60.0
#: gobreaker's open-state period when `timeout` is 0 or absent.
DEFAULT_BREAKER_TIMEOUT = 60.0
#: Go's time.Duration holds this many seconds at most.
_MAX_SECONDS = (2**63 - 1) / 1e9
_MAX_UINT32 = 2**32 - 1
_MAX_RETRIES = 2**63 - 1

_DOCUMENT_KEYS = ("apiVersion", "kind", "metadata", "spec", "scopes")
_SPEC_KEYS = ("policies", "targets")
_POLICIES_KEYS = ("timeouts", "retries", "circuitBreakers")
_RETRY_KEYS = ("policy", "duration", "maxInterval", "maxRetries", "matching")
_MATCHING_KEYS = ("httpStatusCodes", "gRPCStatusCodes")
_BREAKER_KEYS = ("maxRequests", "interval", "timeout", "trip")
_TARGETS_KEYS = ("apps", "components", "actors")
_NAMES_KEYS = ("timeout", "retry", "circuitBreaker")
_APP_KEYS = (*_NAMES_KEYS, "circuitBreakerCacheSize")
_ACTOR_KEYS = (*_NAMES_KEYS, "circuitBreakerScope", "circuitBreakerCacheSize")
_COMPONENT_KEYS = ("inbound", "outbound")
_RETRY_POLICIES = ("constant", "exponential")
#: The policy kinds, as a target names them, and as messages say them.
_KINDS = {"timeout": "timeout", "retry": "retry", "circuitBreaker": "circuit breaker"}
_HTTP_CODES = (100, 599)
_GRPC_CODES = (0, 16)


# ---- durations ----

_MILLISECONDS = re.compile(r"[+-]?\d+")


def go_duration(text: str) -> float:
    """Seconds from daprd's resiliency duration: a bare integer is milliseconds, anything else
    Go's time.ParseDuration ("1m30s", "250ms", "1.5h"); ValueError if it is neither."""
    if _MILLISECONDS.fullmatch(text):
        return int(text) / 1000
    return durations.go_duration(text)


def _duration(value: Any, at: At, what: str) -> float:
    shown = describe(value, at.yaml)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise at.error(f'{what} must be a duration such as "5s", "1m30s" or "500ms", got {shown}')
    try:
        seconds = value / 1000 if isinstance(value, int) else go_duration(value)
    except OverflowError:
        raise at.error(f"{what} is out of range, got {shown}") from None
    except ValueError:
        raise at.error(
            f'{what} must be a duration such as "5s", "1m30s" or "500ms" (a bare number is milliseconds), got {shown}'
        ) from None
    if seconds < 0:
        raise at.error(f"{what} must not be negative, got {shown}")
    if seconds > _MAX_SECONDS:
        raise at.error(f"{what} is out of range, got {shown}")
    return seconds


# ---- status codes ----


@dataclass(frozen=True)
class CodeRanges:
    """`matching.httpStatusCodes` / `gRPCStatusCodes`: codes and ranges ("429,500-599")."""

    ranges: tuple[tuple[int, int], ...]
    text: str = ""

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(low <= code <= high for low, high in self.ranges)


def _code_ranges(value: Any, at: At, what: str, valid: tuple[int, int]) -> CodeRanges | None:
    """As daprd's parsePatterns: comma-separated codes or `start-end` ranges, empty items
    skipped; an empty string is no filter (every error retried)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise at.error(f'{what} must be a string of codes and ranges such as "429,500-599", got {describe(value)}')
    ranges: list[tuple[int, int]] = []
    for item in value.split(","):
        if not item:
            continue
        shown = repr(item if len(item) <= 20 else item[:16] + "...")
        bounds = item.split("-")
        if len(bounds) > 2 or not all(b.strip().isascii() and b.strip().isdigit() and len(b) < 8 for b in bounds):
            raise at.error(f"{what}: {shown} is not a code or a range of codes (start-end)")
        low, high = int(bounds[0]), int(bounds[-1])
        for code in (low, high):
            if not valid[0] <= code <= valid[1]:
                raise at.error(f"{what}: {code} in {shown} is not a valid code ({valid[0]} to {valid[1]})")
        if high < low:
            raise at.error(f"{what}: the range {shown} starts after it ends")
        ranges.append((low, high))
    return CodeRanges(tuple(ranges), value) if ranges else None


# ---- the trip expression (the part of CEL daprd's breakers are given) ----


@dataclass(slots=True)
class Counts:
    """A breaker's counts in its current state (gobreaker.Counts), as a trip sees them."""

    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0

    def clear(self) -> None:
        self.requests = self.total_successes = self.total_failures = 0
        self.consecutive_successes = self.consecutive_failures = 0


#: The variables daprd gives a trip expression, and where Counts keeps each.
TRIP_VARIABLES = {
    "requests": "requests",
    "totalSuccesses": "total_successes",
    "totalFailures": "total_failures",
    "consecutiveSuccesses": "consecutive_successes",
    "consecutiveFailures": "consecutive_failures",
}
_MAX_TRIP_LENGTH = 1000
_MAX_TRIP_DEPTH = 32
_TOKEN = re.compile(
    r"\s*(?:(?P<int>0[xX][0-9a-fA-F]+|\d+)(?P<suffix>[A-Za-z_.][A-Za-z0-9_]*)?"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>&&|\|\||==|!=|<=|>=|[<>!()+\-*/%])|(?P<bad>\S))"
)
_Value: TypeAlias = int | bool
_Eval: TypeAlias = Callable[[Counts], _Value]


def _cel_div(a: int, b: int) -> int:
    # CEL (Go) divides towards zero; Python floors.
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _cel_mod(a: int, b: int) -> int:
    return a - b * _cel_div(a, b)


_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _cel_div,
    "%": _cel_mod,
}
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


class _TripParser:
    """Recursive descent over CEL's grammar, restricted to what a trip can mean: integer
    arithmetic (+ - * / %, unary -), comparisons, `!`, `&&`, `||`, parentheses, integer and
    boolean literals, and daprd's five count variables. Each rule returns the value's type
    ("int" or "bool") and a function of the counts computing it, so an expression is checked
    once, when loaded, and evaluated without parsing."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            if kind is None:
                continue
            if kind == "bad":
                raise ValueError(f"unexpected {match.group('bad')!r} at column {match.start('bad') + 1}")
            if kind == "suffix":  # a literal such as 5u, 1.5 or 3e2
                raise ValueError(
                    f"only integer literals are supported, got {match.group('int') + match.group('suffix')!r}"
                    f" at column {match.start('int') + 1}"
                )
            self.tokens.append((kind, match.group(kind), match.start(kind) + 1))
        self.at = 0
        self.depth = 0

    def parse(self) -> _Eval:
        if not self.tokens:
            raise ValueError("the expression is empty")
        kind, fn = self._or()
        if self.at < len(self.tokens):
            _, value, column = self.tokens[self.at]
            raise ValueError(f"unexpected {value!r} at column {column}")
        if kind != "bool":
            raise ValueError("the expression must be true or false (a comparison), not a number")
        return fn

    def _peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) and self.tokens[self.at][0] == "op" else None

    def _column(self) -> str:
        return f"column {self.tokens[self.at][2]}" if self.at < len(self.tokens) else "the end"

    def _binary(
        self, operators: tuple[str, ...], operand: Callable[[], tuple[str, _Eval]], want: str
    ) -> tuple[str, _Eval]:
        kind, left = operand()
        while (op := self._peek()) in operators:
            column = self.tokens[self.at][2]
            self.at += 1
            right_kind, right = operand()
            if kind != want or right_kind != want:
                raise ValueError(f"{op!r} at column {column} takes {'numbers' if want == 'int' else 'true/false'}")
            left = _combine(op, left, right)
        return kind, left

    def _or(self) -> tuple[str, _Eval]:
        return self._binary(("||",), self._and, "bool")

    def _and(self) -> tuple[str, _Eval]:
        return self._binary(("&&",), self._relation, "bool")

    def _relation(self) -> tuple[str, _Eval]:
        kind, left = self._addition()
        while (op := self._peek()) in _COMPARISONS:
            column = self.tokens[self.at][2]
            self.at += 1
            right_kind, right = self._addition()
            ordered = op not in ("==", "!=")
            if right_kind != kind or (ordered and kind != "int"):
                raise ValueError(f"{op!r} at column {column} compares a {kind} with a {right_kind}")
            kind, left = "bool", _combine(op, left, right)
        return kind, left

    def _addition(self) -> tuple[str, _Eval]:
        return self._binary(("+", "-"), self._multiplication, "int")

    def _multiplication(self) -> tuple[str, _Eval]:
        return self._binary(("*", "/", "%"), self._unary, "int")

    def _unary(self) -> tuple[str, _Eval]:
        op = self._peek()
        if op in ("!", "-"):
            column = self.tokens[self.at][2]
            self.at += 1
            kind, operand = self._nested(self._unary)
            if op == "!":
                if kind != "bool":
                    raise ValueError(f"'!' at column {column} takes true/false")
                return "bool", lambda counts: not operand(counts)
            if kind != "int":
                raise ValueError(f"'-' at column {column} takes a number")
            return "int", lambda counts: -operand(counts)
        return self._primary()

    def _nested(self, rule: Callable[[], tuple[str, _Eval]]) -> tuple[str, _Eval]:
        self.depth += 1
        if self.depth > _MAX_TRIP_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_TRIP_DEPTH} levels")
        try:
            return rule()
        finally:
            self.depth -= 1

    def _primary(self) -> tuple[str, _Eval]:
        if self.at >= len(self.tokens):
            raise ValueError("the expression ends too soon")
        kind, value, column = self.tokens[self.at]
        self.at += 1
        if kind == "int":
            number = int(value, 16) if value[:2].lower() == "0x" else int(value)
            return "int", lambda _: number
        if kind == "name":
            if value in ("true", "false"):
                truth = value == "true"
                return "bool", lambda _: truth
            attribute = TRIP_VARIABLES.get(value)
            if attribute is None:
                close = suggest(value, TRIP_VARIABLES, cutoff=0.6)
                hint = f"; did you mean {close!r}?" if close else f" (one of {', '.join(TRIP_VARIABLES)})"
                raise ValueError(f"unknown variable {value!r} at column {column}{hint}")
            read: _Eval = operator.attrgetter(attribute)
            return "int", read
        if value == "(":
            inner = self._nested(self._or)
            if self._peek() != ")":
                raise ValueError(f"a '(' at column {column} is not closed at {self._column()}")
            self.at += 1
            return inner
        raise ValueError(f"unexpected {value!r} at column {column}")


def _combine(op: str, left: _Eval, right: _Eval) -> _Eval:
    if op == "&&":
        return lambda counts: bool(left(counts)) and bool(right(counts))
    if op == "||":
        return lambda counts: bool(left(counts)) or bool(right(counts))
    fn = _ARITHMETIC.get(op) or _COMPARISONS[op]
    return lambda counts: fn(left(counts), right(counts))


class Trip:
    """A breaker's trip expression, checked when loaded. Calling it with the counts says
    whether the breaker opens; an evaluation error (a division by zero) does not trip it, as
    daprd's breaker does not."""

    __slots__ = ("_fn", "text")

    def __init__(self, text: str) -> None:
        if len(text) > _MAX_TRIP_LENGTH:
            raise ValueError(f"the expression is longer than {_MAX_TRIP_LENGTH} characters")
        self.text = text
        self._fn = _TripParser(text).parse()

    def __call__(self, counts: Counts) -> bool:
        try:
            return bool(self._fn(counts))
        except ZeroDivisionError:
            return False

    def __repr__(self) -> str:
        return f"Trip({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trip) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


# ---- the model ----


@dataclass(frozen=True)
class RetrySpec:
    name: str
    #: "constant" (`duration` between tries) or "exponential" (growing, up to `max_interval`).
    policy: str = "constant"
    duration: float = DEFAULT_DURATION
    max_interval: float = DEFAULT_MAX_INTERVAL
    #: Retries after the first try; -1: for ever.
    max_retries: int = -1
    #: The codes an app's error must have to be retried (None: no filter on that protocol).
    http_codes: CodeRanges | None = None
    grpc_codes: CodeRanges | None = None
    source: str = ""


@dataclass(frozen=True)
class BreakerSpec:
    name: str
    #: Calls let through while half-open (gobreaker: 0 is 1).
    max_requests: int = 1
    #: Seconds after which a closed breaker clears its counts; 0: never.
    interval: float = 0.0
    #: Seconds the breaker stays open before it lets probes through.
    timeout: float = DEFAULT_BREAKER_TIMEOUT
    trip: Trip = field(default_factory=lambda: Trip(DEFAULT_TRIP))
    source: str = ""


@dataclass(frozen=True)
class PolicyNames:
    """The policies one target names ("" for none)."""

    timeout: str = ""
    retry: str = ""
    circuit_breaker: str = ""

    def __bool__(self) -> bool:
        return bool(self.timeout or self.retry or self.circuit_breaker)


@dataclass(frozen=True)
class ComponentTarget:
    #: Calls of the sidecar to the component.
    outbound: PolicyNames = PolicyNames()
    #: Calls of the sidecar to the app for the component (pub/sub deliveries).
    inbound: PolicyNames = PolicyNames()


@dataclass
class ResiliencySpec:
    """Every policy and target of the loaded Resiliency documents (and Layotto JSON section)."""

    timeouts: dict[str, float] = field(default_factory=dict)
    retries: dict[str, RetrySpec] = field(default_factory=dict)
    circuit_breakers: dict[str, BreakerSpec] = field(default_factory=dict)
    apps: dict[str, PolicyNames] = field(default_factory=dict)
    components: dict[str, ComponentTarget] = field(default_factory=dict)
    #: (section, name) -> where it is defined: a name is defined once across documents.
    defined_at: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)
    #: Every policy name a target gives, with where, for `check_references`.
    references: list[tuple[str, str, At]] = field(default_factory=list, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.timeouts or self.retries or self.circuit_breakers)


# ---- reading ----


def _named(section: Obj | None, empty: Any = None) -> Iterator[tuple[str, Any, At]]:
    """(name, value, where) of each entry of a map of named entries; a null value is `empty`
    (as Go decodes null into a struct: its zero value)."""
    if section is None:
        return
    for name, value in section.value.items():
        at = section.at.key(section.value, name)
        if not isinstance(name, str) or not name:
            raise at.error(f"a name must be a non-empty string, got {describe(name, at.yaml)}")
        yield name, empty if value is None else value, at


def parse_spec(spec: Obj, warnings: list[str]) -> ResiliencySpec:
    """A Resiliency `spec` ({policies, targets}) -> its model; references unchecked."""
    spec.check_keys(_SPEC_KEYS)
    out = ResiliencySpec()
    policies = spec.mapping("policies")
    if policies is not None:
        policies.check_keys(_POLICIES_KEYS)
        timeouts = policies.mapping("timeouts")
        for name, value, at in _named(timeouts):
            out.timeouts[name] = _duration(value, at, f"timeout {name!r}")
            out.defined_at[("timeout", name)] = str(at)
        for name, value, at in _named(policies.mapping("retries"), {}):
            out.retries[name] = _retry(name, Obj(value, at, f"retry policy {name!r}", fold_case=spec.fold_case))
            out.defined_at[("retry", name)] = str(at)
        for name, value, at in _named(policies.mapping("circuitBreakers"), {}):
            what = f"circuit breaker {name!r}"
            out.circuit_breakers[name] = _breaker(name, Obj(value, at, what, fold_case=spec.fold_case))
            out.defined_at[("circuitBreaker", name)] = str(at)
    targets = spec.mapping("targets")
    if targets is not None:
        targets.check_keys(_TARGETS_KEYS)
        for name, value, at in _named(targets.mapping("apps"), {}):
            app = Obj(value, at, f"app target {name!r}", fold_case=spec.fold_case)
            app.check_keys(_APP_KEYS)
            app.integer("circuitBreakerCacheSize", low=0, high=2**31 - 1, what="a number of breakers")
            out.apps[name] = _names(app, out)
            out.defined_at[("app", name)] = str(at)
        for name, value, at in _named(targets.mapping("components"), {}):
            component = Obj(value, at, f"component target {name!r}", fold_case=spec.fold_case)
            component.check_keys(_COMPONENT_KEYS)
            outbound, inbound = component.mapping("outbound"), component.mapping("inbound")
            for direction in (outbound, inbound):
                if direction is not None:
                    direction.check_keys(_NAMES_KEYS)
            out.components[name] = ComponentTarget(
                outbound=_names(outbound, out) if outbound is not None else PolicyNames(),
                inbound=_names(inbound, out) if inbound is not None else PolicyNames(),
            )
            out.defined_at[("component", name)] = str(at)
        actors = list(_named(targets.mapping("actors"), {}))
        for name, value, at in actors:
            Obj(value, at, f"actor target {name!r}", fold_case=spec.fold_case).check_keys(_ACTOR_KEYS)
        if actors:
            warnings.append(f"{targets.where('actors')}: this runtime has no actors; the actor targets are ignored")
    return out


def _names(target: Obj, into: ResiliencySpec) -> PolicyNames:
    found: dict[str, str] = {}
    for key in _NAMES_KEYS:
        name = target.text(key)
        if name:
            found[key] = name
            into.references.append((key, name, target.where(key)))
    return PolicyNames(found.get("timeout", ""), found.get("retry", ""), found.get("circuitBreaker", ""))


def _retry(name: str, retry: Obj) -> RetrySpec:
    retry.check_keys(_RETRY_KEYS)
    policy = retry.text("policy") or "constant"
    if policy.lower() not in _RETRY_POLICIES:
        raise retry.where("policy").error(
            f"policy must be constant or exponential, got {describe(policy, retry.at.yaml)}"
        )
    duration = retry.get("duration")
    max_interval = retry.get("maxInterval")
    matching = retry.mapping("matching")
    http_codes = grpc_codes = None
    if matching is not None:
        matching.check_keys(_MATCHING_KEYS)
        raw_http, raw_grpc = matching.get("httpStatusCodes"), matching.get("gRPCStatusCodes")
        if raw_http is not None:
            http_codes = _code_ranges(raw_http, matching.where("httpStatusCodes"), "httpStatusCodes", _HTTP_CODES)
        if raw_grpc is not None:
            grpc_codes = _code_ranges(raw_grpc, matching.where("gRPCStatusCodes"), "gRPCStatusCodes", _GRPC_CODES)
    return RetrySpec(
        name=name,
        policy=policy.lower(),
        duration=DEFAULT_DURATION if duration is None else _duration(duration, retry.where("duration"), "duration"),
        max_interval=(
            DEFAULT_MAX_INTERVAL
            if max_interval is None
            else _duration(max_interval, retry.where("maxInterval"), "maxInterval")
        ),
        max_retries=retry.integer(
            "maxRetries", -1, low=-1, high=_MAX_RETRIES, what="a number of retries (-1: for ever)"
        ),
        http_codes=http_codes,
        grpc_codes=grpc_codes,
        source=str(retry.at),
    )


def _breaker(name: str, breaker: Obj) -> BreakerSpec:
    breaker.check_keys(_BREAKER_KEYS)
    interval, timeout = breaker.get("interval"), breaker.get("timeout")
    trip_text = breaker.get("trip")
    if trip_text is None or trip_text == "":
        trip = Trip(DEFAULT_TRIP)
    elif not isinstance(trip_text, str):
        where = breaker.where("trip")
        raise where.error(
            f'trip must be an expression such as "consecutiveFailures > 5", got {describe(trip_text, where.yaml)}'
        )
    else:
        try:
            trip = Trip(trip_text)
        except ValueError as exc:
            where = breaker.where("trip")
            shown = json.dumps(trip_text if len(trip_text) <= 60 else trip_text[:56] + "...")
            raise where.error(f"trip {shown} is not a valid expression: {exc}") from None
    open_for = 0.0 if timeout is None else _duration(timeout, breaker.where("timeout"), "timeout")
    return BreakerSpec(
        name=name,
        max_requests=max(breaker.integer("maxRequests", 1, low=0, high=_MAX_UINT32, what="a number of calls"), 1),
        interval=0.0 if interval is None else _duration(interval, breaker.where("interval"), "interval"),
        timeout=open_for or DEFAULT_BREAKER_TIMEOUT,
        trip=trip,
        source=str(breaker.at),
    )


@dataclass
class ResiliencyResource:
    """One `Resiliency` document of a resources folder, read."""

    spec: ResiliencySpec
    source: str


def resiliency_resource(top: Obj, warnings: list[str]) -> ResiliencyResource:
    """A `Resiliency` document whose keys `top` holds (its scopes are the caller's to check)."""
    top.check_keys(_DOCUMENT_KEYS)
    spec = top.mapping("spec") or Obj({}, top.where("spec"), "spec", fold_case=top.fold_case)
    return ResiliencyResource(parse_spec(spec, warnings), str(top.at))


# ---- merging and references ----

_SECTIONS = {
    "timeout": "timeout",
    "retry": "retry policy",
    "circuitBreaker": "circuit breaker",
    "app": "app target",
    "component": "component target",
}


def merge(into: ResiliencySpec, other: ResiliencySpec) -> None:
    """Add `other`'s policies and targets to `into`; a name defined in both is an error (daprd
    lets the last document loaded win, which depends on file names)."""
    for key, where in other.defined_at.items():
        earlier = into.defined_at.get(key)
        if earlier is not None:
            section, name = key
            raise ConfigError(f"{_SECTIONS[section]} {name!r} is defined already at {earlier}; define it once", where)
    into.timeouts.update(other.timeouts)
    into.retries.update(other.retries)
    into.circuit_breakers.update(other.circuit_breakers)
    into.apps.update(other.apps)
    into.components.update(other.components)
    into.defined_at.update(other.defined_at)
    into.references.extend(other.references)


def check_references(spec: ResiliencySpec) -> None:
    """Every policy a target names is defined."""
    tables: dict[str, dict[str, Any]] = {
        "timeout": spec.timeouts,
        "retry": spec.retries,
        "circuitBreaker": spec.circuit_breakers,
    }
    for kind, name, at in spec.references:
        table = tables[kind]
        if name in table:
            continue
        close = suggest(name, table)
        if close is not None:
            hint = f"; did you mean {json.dumps(close)}?"
        elif table:
            hint = f" (defined: {', '.join(sorted(table))})"
        else:
            hint = f" (no {_KINDS[kind]} policy is defined)"
        raise at.error(f"{_KINDS[kind]} policy {json.dumps(name)} is not defined{hint}")
