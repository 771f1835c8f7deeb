"""The Sequencer block's interface: per-key increasing int64 ids.

Two kinds of component:
- `Sequencer`: anything that answers `next_id` (snowflake computes ids, it reserves nothing);
- `RangeSequencer`: a backend counter that can atomically reserve `n` consecutive ids
  (`reserve(key, n) -> first id`, SequencerFeature.SEGMENT). Every such component gets, for
  free, the segment cache (`segmentCacheEnable`, `segmentStep`) that serves WEAK requests from
  memory, and `biggerThan` handling through `raise_to`.

Keys reaching a component are already the stored keys (`sequencer|||<app_id>||<key>`); the
API layer builds them with `stored_key`, and `biggerThan` entries go through the same function.
"""

from __future__ import annotations

import asyncio
import enum
import random
from abc import abstractmethod
from collections.abc import Mapping

from layotto.components import keyprefix
from layotto.components.base import Component, ComponentContext, Feature, Metadata, unsupported
from layotto.components.sequencer.segments import SegmentCache
from layotto.errors import ConfigError, InvalidArgumentError

API_PREFIX = "sequencer"
API_SEPARATOR = "|||"
SEPARATOR = keyprefix.SEPARATOR
KEY_PREFIX_METADATA = "keyPrefix"
BIGGER_THAN_EXTRA = "biggerThan"

#: Largest id an int64 field can carry.
MAX_ID = (1 << 63) - 1

DEFAULT_SEGMENT_STEP = 10000


def key_contains_separator(key: str) -> bool:
    return SEPARATOR in key


def prefix_strategy(metadata: Mapping[str, object]) -> str:
    """Upstream's `keyPrefix` for sequencers: appid (default), name, none, or a literal."""
    return keyprefix.lock_style_strategy(metadata.get(KEY_PREFIX_METADATA, ""), "metadata.keyPrefix")


def stored_key(strategy: str, store_name: str, app_id: str, key: str) -> str:
    """The key a component stores, exactly as upstream's GetModifiedSeqKey builds it."""
    return API_PREFIX + API_SEPARATOR + keyprefix.key_prefix(strategy, store_name, app_id) + key


def bigger_than(metadata: Metadata, context: ComponentContext) -> dict[str, int]:
    """`biggerThan` from config, keyed by stored key, values > 0 only.

    Entries name the app's key (as sent in GetNextIdRequest.key); an entry that already
    starts with `sequencer|||` is taken as a stored key. (Upstream applies the raw entry,
    which never matches the prefixed key the API uses; we apply it where ids are drawn.)
    """
    raw = context.extras.get(BIGGER_THAN_EXTRA) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("biggerThan must be an object of {key: integer}", metadata.where)
    strategy = prefix_strategy(metadata)
    out: dict[str, int] = {}
    for key, value in raw.items():
        try:
            floor = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"biggerThan.{key} must be an integer, got {value!r}", metadata.where) from None
        if floor <= 0:
            continue
        full = (
            key
            if key.startswith(API_PREFIX + API_SEPARATOR)
            else stored_key(strategy, context.name, context.app_id, key)
        )
        out[full] = floor
    return out


class SequencerFeature(Feature):
    #: `reserve(key, n)` takes n consecutive ids of a per-key counter at once (upstream's
    #: GetSegment): a key's first id is 1 and STRONG ids without a cache are consecutive.
    #: Without it (snowflake computes ids), `reserve` raises UnsupportedError.
    SEGMENT = enum.auto()


class Sequencer(Component):
    """Hands out ids per key. `strong=True` (STRONG) ids are unique and strictly increasing
    across every sidecar sharing the backend; WEAK ids are unique and increase from one
    sidecar's view, but may skip."""

    features: frozenset[SequencerFeature] = frozenset()

    @abstractmethod
    async def next_id(self, key: str, *, strong: bool, metadata: Mapping[str, str]) -> int: ...

    async def reserve(self, key: str, count: int) -> int:
        """Atomically take `count` consecutive ids; return the first (SequencerFeature.SEGMENT)."""
        raise unsupported(self, SequencerFeature.SEGMENT, "reserve")


class RangeSequencer(Sequencer):
    """A backend counter per key. Subclasses implement `reserve` and `raise_to`, and call
    `await super().init(metadata, context)` *after* their backend is reachable."""

    features = frozenset({SequencerFeature.SEGMENT})

    #: Whether WEAK requests use the segment cache when `segmentCacheEnable` is not set.
    #: True where upstream caches (redis, in-memory), False where it calls the store.
    segment_cache_default: bool = False

    _segments: SegmentCache | None = None

    @abstractmethod
    async def reserve(self, key: str, count: int) -> int:
        """Atomically take `count` ids; return the first (the ids are first..first+count-1).

        Every reservation on a key, from any sidecar, returns ids above all earlier ones.
        """

    @abstractmethod
    async def raise_to(self, key: str, floor: int) -> None:
        """Make the next reserved id of `key` greater than `floor` (no-op if it is already)."""

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        if metadata.get_bool("segmentCacheEnable", self.segment_cache_default):
            step = metadata.get_int("segmentStep", DEFAULT_SEGMENT_STEP)
            if step < 1:
                raise ConfigError(f"segmentStep must be at least 1, got {step}", f"{metadata.where}.metadata")
            self._segments = SegmentCache(self.reserve, step)
        for key, floor in bigger_than(metadata, context).items():
            await self.raise_to(key, floor)

    async def next_id(self, key: str, *, strong: bool, metadata: Mapping[str, str]) -> int:
        segments = self._segments
        if segments is None:
            return await self.reserve(key, 1)
        if strong:
            issued = await self.reserve(key, 1)
            # A later WEAK call from this sidecar must not go below an id it already issued.
            segments.observe(key, issued)
            return issued
        return await segments.next(key)

    async def close(self) -> None:
        if self._segments is not None:
            await self._segments.close()


class CasSequencer(RangeSequencer):
    """A counter per key advanced by compare-and-swap (`_update`), retried on a lost race."""

    def __init__(self) -> None:
        self._key_locks: dict[str, asyncio.Lock] = {}

    @abstractmethod
    async def _update(self, key: str, change: int, *, at_least: bool) -> int:
        """Set the counter to counter+change (or max(counter, change)); return the new value."""

    async def reserve(self, key: str, count: int) -> int:
        check_count(count)
        # One CAS at a time per key from this sidecar: concurrent tasks racing each other
        # would only make each other retry; only other sidecars can still conflict.
        lock = self._key_locks.get(key)
        if lock is None:
            lock = self._key_locks[key] = asyncio.Lock()
        async with lock:
            return await self._update(key, count, at_least=False) - count + 1

    async def raise_to(self, key: str, floor: int) -> None:
        await self._update(key, floor, at_least=True)

    #: Compare-and-swap rounds one update tries before it reports too much contention.
    max_attempts = 1000

    @staticmethod
    async def lost_race(attempt: int) -> None:
        """After a lost compare-and-swap: past a few rounds (other sidecars contend for the
        key), a short random pause spreads the contenders out."""
        if attempt >= 3:
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 20)))


def check_count(count: int) -> None:
    if count < 1:
        raise InvalidArgumentError(f"cannot reserve {count} ids")
