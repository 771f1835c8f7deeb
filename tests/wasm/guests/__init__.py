"""The test guests: proxy-wasm modules written in WebAssembly text, built with wasmtime's
wat2wasm when a test needs them.

A guest file puts `;;@imports` where the shared imports go and `;;@prelude` where the shared
definitions go (`prelude.wat`: memory, malloc, the lifecycle exports, request helpers), so
each file holds only what its guest does. `{{name}}` is replaced by the build's parameter of
that name (the function id is `id`), and `{{s:text}}` by the address and size of `text`,
which the build lays out in a data segment.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import wasmtime

HERE = Path(__file__).parent
#: Where `{{s:...}}` strings go; below it are the host's scratch words and the id.
_STRINGS_AT = 4096
_STRING = re.compile(r"\{\{s:([^}]*)\}\}")
_PARAM = re.compile(r"\{\{(\w+)\}\}")


def source(name: str, **params: str) -> str:
    prelude = (HERE / "prelude.wat").read_text()
    imports, _, definitions = prelude.partition(";;@definitions")
    text = (HERE / f"{name}.wat").read_text().replace(";;@imports", imports).replace(";;@prelude", definitions)
    values = {"id": name, **params}
    text = _PARAM.sub(lambda m: values[m.group(1)] if m.group(1) != "id_len" else str(len(values["id"])), text)
    strings: dict[str, int] = {}
    offset = _STRINGS_AT

    def place(found: re.Match[str]) -> str:
        nonlocal offset
        literal = found.group(1)
        if literal not in strings:
            strings[literal] = offset
            offset += len(literal.encode())
        return f"(i32.const {strings[literal]}) (i32.const {len(literal.encode())})"

    text = _STRING.sub(place, text)
    segments = "".join(f'  (data (i32.const {at}) "{s}")\n' for s, at in strings.items())
    return text[: text.rindex(")")] + segments + ")\n"


@cache
def _built(name: str, params: tuple[tuple[str, str], ...]) -> bytes:
    return wasmtime.wat2wasm(source(name, **dict(params)))


def build(name: str, **params: str) -> bytes:
    """The module `name.wat` with `params` (id defaults to the name)."""
    return _built(name, tuple(sorted(params.items())))


def write(directory: Path, name: str, **params: str) -> Path:
    """Build `name` into `directory`; the path of the .wasm file."""
    path = directory / f"{params.get('id', name)}.wasm"
    path.write_bytes(build(name, **params))
    return path
