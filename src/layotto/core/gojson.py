"""JSON as Go's encoding/json writes it, for whatever must give the bytes daprd gives.

Here, below the APIs and the runtime, because both write values an app sent as JSON: the Dapr
HTTP API's state saves and an HTTP app's reply to an input binding event must store identical
bytes for the same JSON value.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["go_json", "stringify"]

# Go escapes these in every string it writes, so a JSON body is safe to embed in HTML.
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _as_float64(value: Any) -> Any:
    """A value decoded into Go's `any`: every number is a float64, so 2.0 writes as 2."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _as_float64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_float64(v) for v in value]
    return value


def go_json(value: Any, *, decoded: bool = False) -> str:
    """`value` as Go's json.Marshal writes it: compact, HTML characters escaped. `decoded` for
    a value Go decoded into `any` (its maps marshal with sorted keys, its numbers as float64)."""
    if decoded:
        value = _as_float64(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=decoded, allow_nan=False)
    return text.translate(_HTML_SAFE)


def stringify(value: Any) -> bytes:
    """A state value as daprd's stores persist what it decoded from JSON: json.Marshal of it
    (a string is stored quoted, a missing value as `null`)."""
    return go_json(value, decoded=True).encode()
