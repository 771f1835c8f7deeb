"""What makes text a safe name for a file or an object: the checks File and OSS share.

A name is UTF-8 text within a byte limit, holds no control character (C0, DEL, C1: they
corrupt logs, listings and terminals, and NUL cuts paths short in the OS), and its `..`
segments never climb above the folder it is relative to.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def text_fault(text: str, max_bytes: int, noun: str) -> str | None:
    """Why `text` cannot be a `noun` (too long, not UTF-8, a control character), else None."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size > max_bytes:
        return f"is {size} bytes long; {noun} is at most {max_bytes} bytes (UTF-8)"
    control = _CONTROL.search(text)
    if control is not None:
        return f"holds the control character U+{ord(control.group()):04X}; {noun} is text without any"
    return None


def depth(path: str) -> int | None:
    """How many folders below its base `path` names (0: the base itself), or None when a
    `..` climbs above the base."""
    level = 0
    for part in path.split("/"):
        if part == "..":
            level -= 1
            if level < 0:
                return None
        elif part not in ("", "."):
            level += 1
    return level
