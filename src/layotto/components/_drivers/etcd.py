"""The one place etcd clients are made from upstream metadata, shared by lock, sequencer and
configuration: endpoint lists, credentials, the dial timeout and what counts as an outage."""

from __future__ import annotations

from typing import Any

import aetcd
import aetcd.exceptions

from layotto.components.base import Metadata
from layotto.errors import BackendUnavailableError, ConfigError

DEFAULT_PORT = 2379

#: The client's errors for "etcd cannot be reached right now".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    OSError,
    TimeoutError,
)


def parse_endpoints(raw: str | list[Any], where: str) -> list[tuple[str, int]]:
    """`host:port` entries separated by ';' (upstream) or ',', or a list of them; an `http://`
    or `https://` scheme is dropped, the port defaults to 2379. Empty when none is given."""
    parts = (
        [str(p) for p in raw] if isinstance(raw, list) else [p for chunk in raw.split(";") for p in chunk.split(",")]
    )
    endpoints: list[tuple[str, int]] = []
    for part in parts:
        text = part.strip().removeprefix("http://").removeprefix("https://")
        if not text:
            continue
        host, colon, port = text.rpartition(":")
        if not colon:
            endpoints.append((text, DEFAULT_PORT))
        elif port.isdigit():
            endpoints.append((host.strip("[]"), int(port)))
        else:
            raise ConfigError(f"bad etcd address {part!r}", where)
    return endpoints


def connect(endpoint: tuple[str, int], metadata: Metadata, timeout: float) -> aetcd.Client:
    """A client of one endpoint with `username`/`password`; `timeout` (whole seconds, at least
    1) bounds both the dial and every call."""
    seconds = max(1, round(timeout))
    host, port = endpoint
    return aetcd.Client(
        host=host,
        port=port,
        username=metadata.get_str("username") or None,
        password=metadata.get_str("password") or None,
        timeout=seconds,
        connect_wait_timeout=seconds,
    )


def address(endpoints: list[tuple[str, int]]) -> str:
    return ";".join(f"{host}:{port}" for host, port in endpoints)


def unavailable(where: str, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(f"etcd at {where} is unavailable: {exc or type(exc).__name__}")
