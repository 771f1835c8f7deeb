"""proxy-wasm ABI 0.2.0 as upstream Layotto speaks it: the numbers a guest and the host agree
on, and the one serialisation they share for header maps (and for the configuration buffers).

The numbers are the ABI's (layotto/proxy-wasm-go-host `proxywasm/v1/types.go` has the same).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from enum import IntEnum

__all__ = [
    "ABI_VERSIONS",
    "Action",
    "BufferType",
    "LogLevel",
    "MapType",
    "WasmResult",
    "decode_pairs",
    "encode_pairs",
]

#: The marker exports of the ABI versions this host serves: upstream's guests export 0.2.0,
#: its Go host still names the same calls 0.1.0.
ABI_VERSIONS = ("proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0")


class WasmResult(IntEnum):
    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    BAD_EXPRESSION = 5
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    RESULT_MISMATCH = 9
    INTERNAL_FAILURE = 10
    BROKEN_CONNECTION = 11
    UNIMPLEMENTED = 12


class Action(IntEnum):
    CONTINUE = 0
    PAUSE = 1


class BufferType(IntEnum):
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_RECEIVE_BUFFER = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    #: Where `proxy_get_id` leaves the function's id (Layotto's).
    CALL_DATA = 8


class MapType(IntEnum):
    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3


class LogLevel(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


_U32 = struct.Struct("<I")


def encode_pairs(pairs: Iterable[tuple[str, str]]) -> bytes:
    """count, then (key size, value size) per pair, then each key and value NUL-terminated."""
    items = [(k.encode(), v.encode()) for k, v in pairs]
    sizes = b"".join(struct.pack("<II", len(k), len(v)) for k, v in items)
    data = b"".join(k + b"\0" + v + b"\0" for k, v in items)
    return _U32.pack(len(items)) + sizes + data


def decode_pairs(raw: bytes) -> list[tuple[str, str]]:
    """The pairs of `encode_pairs`' layout; ValueError when `raw` does not hold them. The
    terminator bytes are skipped, not checked: upstream's own encoder writes '0' there."""
    if len(raw) < 4:
        raise ValueError("a header map is at least 4 bytes")
    (count,) = _U32.unpack_from(raw, 0)
    offset = 4 + 8 * count
    if offset > len(raw):
        raise ValueError(f"a header map of {count} pairs does not fit in {len(raw)} bytes")
    pairs: list[tuple[str, str]] = []
    for i in range(count):
        key_size, value_size = struct.unpack_from("<II", raw, 4 + 8 * i)
        end = offset + key_size + 1 + value_size + 1
        if end > len(raw):
            raise ValueError("a header map's pair runs past its end")
        key = raw[offset : offset + key_size]
        value = raw[offset + key_size + 1 : offset + key_size + 1 + value_size]
        pairs.append((key.decode(), value.decode()))
        offset = end
    return pairs
