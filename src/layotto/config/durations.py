"""Go's time.ParseDuration, which Dapr's and Layotto's configs use for every duration."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def go_duration(text: str) -> float:
    """Seconds from a Go duration ("1m30s", "250ms", "-1.5h"); ValueError if it is none."""
    sign, body = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text[1:] if text[:1] == "+" else text)
    total, at = 0.0, 0
    for part in _PART.finditer(body):
        if part.start() != at:
            raise ValueError(text)
        total += float(part.group(1)) * _UNITS[part.group(2)]
        at = part.end()
    if at != len(body) or at == 0:
        raise ValueError(text)
    return sign * total
