"""Typed reading of config documents, shared by the Layotto JSON and Dapr YAML loaders.

A loader wraps each object it expects in an `Obj`: it names the keys the object may have
(refusing any other with the closest known one), and reads each value as the type that key
takes. Every mistake is a ConfigError whose path (`At`) names the file and the JSON path or
YAML location, so no malformed input reaches the runtime as a traceback.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from layotto.errors import ConfigError

#: Upstream's deepest config nests about 12 levels (with component metadata); far more than
#: that is a mistake or an attack, and Python's parsers recurse, so it is refused early.
MAX_DEPTH = 64
#: Values a YAML file may expand to. An alias costs one line and stands for the whole anchored
#: value, so a few lines can stand for billions ("billion laughs"); no resources folder has this many.
MAX_YAML_NODES = 100_000

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+\Z")
#: A step back towards the root in `check_tree`: (the step before, the container, key, is an index).
#: Steps of a path `check_tree` shows before "...".
_TRAIL_SHOWN = 12
_Trail: TypeAlias = tuple[Any, Any, Any, bool] | None


class Marks:
    """The lines of a parsed YAML document's mappings and lists, and of their keys and items."""

    def __init__(self) -> None:
        # Each entry holds its container, so that no other object takes the id while it lives.
        self._by_id: dict[int, tuple[object, int, dict[Any, int] | list[int]]] = {}

    def note(self, container: object, line: int, children: dict[Any, int] | list[int]) -> None:
        self._by_id.setdefault(id(container), (container, line, children))

    def line(self, container: object) -> int | None:
        entry = self._by_id.get(id(container))
        return entry[1] if entry else None

    def child_line(self, container: object, key: object) -> int | None:
        entry = self._by_id.get(id(container))
        if entry is None:
            return None
        children = entry[2]
        if isinstance(children, list):
            return children[key] if isinstance(key, int) and 0 <= key < len(children) else None
        try:
            return children.get(key)
        except TypeError:  # an unhashable key never reaches a dict, but be safe
            return None


@dataclass(frozen=True)
class At:
    """Where a value sits: the file (and document), the path inside it, the YAML line."""

    source: str
    path: str = ""
    line: int | None = None
    yaml: bool = False
    marks: Marks | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        text = ": ".join(part for part in (self.source, self.path) if part)
        return f"{text} (line {self.line})" if self.line else text

    def key(self, container: object, key: object) -> At:
        return self._child(container, key, _join(self.path, key))

    def item(self, container: object, index: int) -> At:
        return self._child(container, index, f"{self.path}[{index}]")

    def _child(self, container: object, key: object, path: str) -> At:
        line = self.marks.child_line(container, key) if self.marks else None
        return At(self.source, path, line or self.line, self.yaml, self.marks)

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, str(self))

    @property
    def object_name(self) -> str:
        return "a mapping" if self.yaml else "a JSON object"

    @property
    def list_name(self) -> str:
        return "a list" if self.yaml else "a JSON array"


def _join(path: str, key: object) -> str:
    if isinstance(key, str) and _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    shown = json.dumps(key) if isinstance(key, str) else repr(key)
    return f"{path}[{shown}]"


def describe(value: Any, yaml: bool = False) -> str:
    """What a value is, as a message says it: `the string "abc"`, `a JSON array`, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        text = repr(value)
        return f"the number {text if len(text) <= 24 else text[:20] + '...'}"
    if isinstance(value, str):
        shown = json.dumps(value if len(value) <= 40 else value[:36] + "...")
        return f"the string {shown}"
    if isinstance(value, dict):
        return "a mapping" if yaml else "a JSON object"
    if isinstance(value, list | tuple):
        return "a list" if yaml else "a JSON array"
    return f"a value of type {type(value).__name__}"


def suggest(word: object, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to `word` (case aside), if any is close enough."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[close[0]] if close else None


def unknown_key(at: At, key: object, known: Collection[str], ignored: Collection[str] = ()) -> ConfigError:
    """The error for a key that is neither `known` (read) nor `ignored` (accepted, unused)."""
    shown = json.dumps(key) if isinstance(key, str) else repr(key)
    hint = suggest(key, [*known, *ignored])
    if hint is not None:
        return at.error(f"unknown key {shown}; did you mean {json.dumps(hint)}?")
    listed = ", ".join(known)
    if ignored:
        listed += f"{', and ' if known else ''}{len(ignored)} accepted but ignored"
    return at.error(f"unknown key {shown} (known here: {listed})")


def decode(data: bytes, where: str) -> str:
    """UTF-8 text (a byte-order mark allowed); anything else names the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} column {column} ({exc.reason})", where
        ) from None


def check_tree(value: Any, at: At, max_nodes: int | None = None) -> None:
    """Refuse, before any loader walks it, what nothing downstream should meet: nesting deeper
    than MAX_DEPTH (a cycle too), more than `max_nodes` values (YAML aliases expanded), strings
    that are not Unicode text (lone surrogates, from JSON's \\ud800 escapes) and non-finite
    numbers (JSON's 1e999). Iterative, so that the depth of the input is not Python's."""
    # Each entry: the value, its depth, and the trail back to the root (for the error's path).
    stack: list[tuple[Any, int, _Trail]] = [(value, 0, None)]
    seen = 0
    while stack:
        current, depth, trail = stack.pop()
        seen += 1
        if max_nodes is not None and seen > max_nodes:
            raise at.error(f"expands to more than {max_nodes} values (are YAML aliases repeating an anchor?)")
        if isinstance(current, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise _at_trail(at, trail).error(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(current, dict):
                for key, child in current.items():
                    if not isinstance(key, str) and not at.yaml:  # JSON text has none; a caller's dict may
                        raise _at_trail(at, trail).error(f"key {key!r} is not a string")
                    if isinstance(key, str) and not _is_text(key):
                        raise _at_trail(at, trail).error(f"key {json.dumps(key)} is not Unicode text")
                    stack.append((child, depth + 1, (trail, current, key, False)))
            else:
                for index, child in enumerate(current):
                    stack.append((child, depth + 1, (trail, current, index, True)))
        elif isinstance(current, str):
            if not _is_text(current):
                raise _at_trail(at, trail).error("a string is not Unicode text (it has a lone surrogate)")
        elif isinstance(current, float) and not math.isfinite(current):
            raise _at_trail(at, trail).error("a number is out of range")


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _at_trail(at: At, trail: Any) -> At:
    steps = []
    while trail is not None:
        trail, container, key, is_index = trail
        steps.append((container, key, is_index))
    steps.reverse()
    for container, key, is_index in steps[:_TRAIL_SHOWN]:
        at = at.item(container, key) if is_index else at.key(container, key)
    if len(steps) > _TRAIL_SHOWN:  # a path 64 levels deep says no more than its start
        at = At(at.source, f"{at.path}...", at.line, at.yaml, at.marks)
    return at


class Obj:
    """One JSON object or YAML mapping of a config, read key by key.

    `fold_case`: keys match whatever their case, as Go's encoding/json matches struct fields
    (upstream reads its JSON so); Dapr YAML keys are matched exactly.
    """

    def __init__(self, value: Any, at: At, what: str, *, fold_case: bool = True) -> None:
        if not isinstance(value, dict):
            raise at.error(f"{what} must be {at.object_name}, got {describe(value, at.yaml)}")
        self.value: dict[Any, Any] = value
        self.at = at
        self.fold_case = fold_case

    def find(self, key: str) -> tuple[Any, Any]:
        """(the key as written, its value); (None, None) when absent."""
        if key in self.value:
            return key, self.value[key]
        if self.fold_case:
            lowered = key.lower()
            for written, value in self.value.items():
                if isinstance(written, str) and written.lower() == lowered:
                    return written, value
        return None, None

    def get(self, key: str) -> Any:
        return self.find(key)[1]

    def where(self, key: str) -> At:
        written = self.find(key)[0]
        return self.at.key(self.value, key if written is None else written)

    def check_keys(self, known: Collection[str], ignored: Collection[str] = (), legacy: Collection[str] = ()) -> None:
        """Every key must be `known` (read), `ignored` (accepted, not used) or `legacy` (accepted,
        never suggested: old names a typo should not be steered to)."""
        allowed = (*known, *ignored, *legacy)
        folded = {k.lower() for k in allowed} if self.fold_case else set(allowed)
        for key in self.value:
            ok = isinstance(key, str) and (key.lower() if self.fold_case else key) in folded
            if not ok:
                raise unknown_key(self.at.key(self.value, key), key, known, ignored)

    def text(self, key: str, default: str = "", *, required: bool = False, nonempty: bool = False) -> str:
        value = self.get(key)
        if value is None:
            if required:
                raise self.at.error(f'"{key}" is missing')
            return default
        if not isinstance(value, str):
            raise self.where(key).error(f"{key} must be a string, got {describe(value, self.at.yaml)}")
        if nonempty and not value:
            raise self.where(key).error(f"{key} must not be empty")
        return value

    def integer(self, key: str, default: int = 0, *, low: int, high: int, what: str = "an integer") -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.where(key).error(
                f"{key} must be {what} from {low} to {high}, got {describe(value, self.at.yaml)}"
            )
        return value

    def number(self, key: str, *, high: float, what: str) -> float | None:
        """A positive number up to `high`; None when absent."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise self.where(key).error(
                f"{key} must be a positive number of {what}, at most {high:g}, got {describe(value, self.at.yaml)}"
            )
        return float(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.where(key).error(f"{key} must be true or false, got {describe(value, self.at.yaml)}")
        return value

    def mapping(self, key: str, what: str | None = None, *, required: bool = False) -> Obj | None:
        value = self.get(key)
        if value is None:
            if required:
                raise self.at.error(f'"{key}" is missing')
            return None
        return Obj(value, self.where(key), what or key, fold_case=self.fold_case)

    def items(self, key: str) -> list[tuple[Any, At]]:
        """The items of a list, each with its location; [] when absent."""
        value = self.get(key)
        if value is None:
            return []
        where = self.where(key)
        if not isinstance(value, list):
            raise where.error(f"{key} must be {where.list_name}, got {describe(value, self.at.yaml)}")
        return [(item, where.item(value, i)) for i, item in enumerate(value)]

    def objects(self, key: str, what: str) -> list[Obj]:
        """The items of a list of objects."""
        return [Obj(item, at, what, fold_case=self.fold_case) for item, at in self.items(key)]
