"""What the RabbitMQ components (pub/sub, the binding) share: one robust connection, the errors
that mean the broker is away, and the URL as messages may show it."""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelInvalidStateError

from layotto.errors import BackendUnavailableError

# aiormq raises a bare RuntimeError("<Connection ...> closed") for a channel opened on a lost
# connection; every other RuntimeError of aio_pika/aiormq is a closed-state error too.
UNAVAILABLE = (ConnectionError, OSError, ChannelInvalidStateError, asyncio.TimeoutError, RuntimeError)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def unavailable(url: str, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(f"rabbitmq at {safe_url(url)} is unavailable: {exc!r}")


async def connect(url: str, dial_timeout: float, reconnect_interval: float) -> AbstractRobustConnection:
    """A connection that reconnects by itself, every `reconnect_interval` seconds."""
    try:
        return await aio_pika.connect_robust(url, timeout=dial_timeout, reconnect_interval=reconnect_interval)
    except Exception as exc:
        raise unavailable(url, exc) from exc


def check_connected(connection: AbstractRobustConnection, url: str) -> None:
    # A robust connection that lost its broker is not closed, only not connected (it reconnects).
    if connection.is_closed or not connection.connected.is_set():
        raise BackendUnavailableError(f"rabbitmq at {safe_url(url)} is not connected")
