"""Dapr's `bindings.cron` input binding: an event on a schedule, with no data.

Metadata `schedule` (required) takes what upstream's parser takes (robfig/cron with optional
seconds and descriptors):

- five fields `minute hour day-of-month month day-of-week` (seconds = 0), or six with the
  seconds first; each field `*`, `?`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`
  (from a to the field's maximum), or a comma-separated list of those; months `jan`-`dec` and
  days `sun`-`sat` by name too. Day-of-month and day-of-week: if either is `*` (or `?`) both must
  match, else either one does.
- `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`, and
  `@every <duration>` (a Go duration such as `1s`, `1m30s`; at least one second, whole seconds:
  the first tick one period after reading begins).
- a `CRON_TZ=<zone> ` (or `TZ=<zone> `) prefix: the fields are in that IANA zone; else local time.

Each tick's metadata is `timeZone` (the zone's name, `Local` without one) and `readTimeUTC`
(as Go prints a UTC time). A tick is not redelivered when the app fails it, as upstream. Ticks
are handled concurrently: a slow app does not delay the schedule.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass

from layotto.components.base import ComponentContext, Metadata, parse_duration
from layotto.components.bindings import base as binding
from layotto.errors import ConfigError

log = logging.getLogger("layotto.bindings.cron")

_MONTHS = {name: i + 1 for i, name in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {name: i for i, name in enumerate("sun mon tue wed thu fri sat".split())}

#: (low, high, names) of the six fields, seconds first.
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 6, _DAYS),
)

_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

#: How far ahead a schedule is searched for its next time (upstream: five years).
_HORIZON_YEARS = 5


class ScheduleError(ValueError):
    pass


def _number(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ScheduleError(f"failed to parse int from {text}")
    return int(text)


def _field(expr: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """The values `expr` allows, and whether it is `*` (a star counts in day matching)."""
    values: set[int] = set()
    star = False
    for part in expr.split(","):
        range_part, *step_part = part.split("/")
        if len(step_part) > 1:
            raise ScheduleError(f"too many slashes: {part}")
        bounds = range_part.split("-")
        if range_part in ("*", "?"):
            start, end, part_star = low, high, True
        elif len(bounds) <= 2:
            start = _number(bounds[0], names)
            end = _number(bounds[1], names) if len(bounds) == 2 else start
            part_star = False
        else:
            raise ScheduleError(f"too many hyphens: {part}")
        step = 1
        if step_part:
            step = _number(step_part[0], {})
            if len(bounds) == 1 and not part_star:
                end = high  # "a/n" means a to the maximum, every n
            if step > 1:
                part_star = False
        if start < low:
            raise ScheduleError(f"beginning of range ({start}) below minimum ({low}): {part}")
        if end > high:
            raise ScheduleError(f"end of range ({end}) above maximum ({high}): {part}")
        if start > end:
            raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        if step == 0:
            raise ScheduleError(f"step of range should be a positive number: {part}")
        values.update(range(start, end + 1, step))
        star = star or part_star
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    """When a cron binding ticks: `next_after(moment)` is the first tick after `moment`."""

    zone: dt.tzinfo | None
    zone_name: str
    every: float = 0.0
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    any_day: bool = False

    @classmethod
    def parse(cls, spec: str) -> Schedule:
        spec = spec.strip()
        zone: dt.tzinfo | None = None
        zone_name = "Local"
        if spec.startswith(("CRON_TZ=", "TZ=")):
            prefix, _, spec = spec.partition(" ")
            zone_name = prefix.split("=", 1)[1]
            try:
                zone = zoneinfo.ZoneInfo(zone_name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ScheduleError(f"provided bad location {zone_name}") from None
            spec = spec.strip()
        if spec.startswith("@every "):
            try:
                every = parse_duration(spec[len("@every ") :])
            except ValueError:
                raise ScheduleError(f"failed to parse duration {spec}") from None
            return cls(zone, zone_name, every=float(max(1, int(every))))
        if spec.startswith("@"):
            if spec not in _DESCRIPTORS:
                raise ScheduleError(f"unrecognized descriptor: {spec}")
            spec = _DESCRIPTORS[spec]
        fields = spec.split()
        if len(fields) == 5:
            fields.insert(0, "0")
        if len(fields) != 6:
            raise ScheduleError(f"expected 5 to 6 fields, found {len(fields)}: {spec}")
        parsed = [_field(expr, *bounds) for expr, bounds in zip(fields, _FIELDS, strict=True)]
        (seconds, _), (minutes, _), (hours, _), (days, dom_star), (months, _), (weekdays, dow_star) = parsed
        return cls(zone, zone_name, 0.0, seconds, minutes, hours, days, months, weekdays, dom_star or dow_star)

    def _day(self, moment: dt.datetime) -> bool:
        in_month = moment.day in self.days
        in_week = moment.isoweekday() % 7 in self.weekdays
        return (in_month and in_week) if self.any_day else (in_month or in_week)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first tick after `moment` (an aware time), or None within the horizon."""
        if self.every:
            start = moment.replace(microsecond=0)
            return start + dt.timedelta(seconds=self.every)
        # Wall-clock time in the schedule's zone (naive local time without one).
        wall = moment.astimezone(self.zone).replace(microsecond=0, tzinfo=None) + dt.timedelta(seconds=1)
        horizon = wall.year + _HORIZON_YEARS
        while wall.year <= horizon:
            if wall.month not in self.months:
                wall = dt.datetime(wall.year + wall.month // 12, wall.month % 12 + 1, 1)
            elif not self._day(wall):
                wall = dt.datetime(wall.year, wall.month, wall.day) + dt.timedelta(days=1)
            elif wall.hour not in self.hours:
                wall = wall.replace(minute=0, second=0) + dt.timedelta(hours=1)
            elif wall.minute not in self.minutes:
                wall = wall.replace(second=0) + dt.timedelta(minutes=1)
            elif wall.second not in self.seconds:
                wall += dt.timedelta(seconds=1)
            else:
                return wall.replace(tzinfo=self.zone) if self.zone is not None else wall.astimezone()
        return None


def go_utc(moment: dt.datetime) -> str:
    """`moment` as Go's time.Time.String() prints a UTC time."""
    utc = moment.astimezone(dt.UTC)
    fraction = f".{utc.microsecond:06d}".rstrip("0") if utc.microsecond else ""
    return f"{utc:%Y-%m-%d %H:%M:%S}{fraction} +0000 UTC"


class CronBinding(binding.Binding):
    metadata_keys = ("schedule",)
    features = frozenset({binding.BindingFeature.INPUT})

    def __init__(self) -> None:
        self._readings: set[binding.TaskReading] = set()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        spec = metadata.get_str("schedule")
        where = f"{metadata.where}.metadata.schedule"
        if not spec:
            raise ConfigError("schedule not set", where)
        try:
            self.schedule = Schedule.parse(spec)
        except ScheduleError as exc:
            raise ConfigError(f"invalid schedule format '{spec}': {exc}", where) from None
        self.spec = spec

    async def read(self, handler: binding.Handler) -> binding.Reading:
        return binding.TaskReading(self._ticks(handler), f"cron-{self.context.name}", self._readings)

    async def _ticks(self, handler: binding.Handler) -> None:
        running: set[asyncio.Task[bool]] = set()
        last = dt.datetime.now(dt.UTC)
        try:
            while True:
                # Never before the last tick: a timer may wake a moment early.
                due = self.schedule.next_after(max(last, dt.datetime.now(dt.UTC)))
                if due is None:
                    log.warning("cron binding %s: schedule %r has no next time", self.context.name, self.spec)
                    return
                await asyncio.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()))
                last = due
                metadata = {"timeZone": self.schedule.zone_name, "readTimeUTC": go_utc(dt.datetime.now(dt.UTC))}
                task = asyncio.create_task(
                    binding.handled(handler, binding.BindingEvent(b"", metadata), f"cron {self.context.name}")
                )
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def close(self) -> None:
        await binding.close_readings(self._readings)
