"""A delay scheduler: keeps messages until they are due, then publishes them through a pub/sub
component. One scheduler per delay-capable pub/sub component; started after the components and
stopped before they close, by the sidecar."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from layotto.components.base import Metadata
from layotto.components.pubsub.base import PubSub, PubSubFeature
from layotto.tasks import stop_task

log = logging.getLogger("layotto.delay_queue")

#: Seconds to wait before retrying a publish that failed (backend down).
RETRY_DELAY = 1.0


@dataclass
class DelayedMessage:
    id: str
    topic: str
    #: The payload exactly as it will be published (already wrapped in a CloudEvent or raw).
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)


class DelayScheduler(ABC):
    def __init__(self, pubsub: PubSub, name: str, metadata: Metadata) -> None:
        self.pubsub = pubsub
        self.name = name
        self.metadata = metadata

    @abstractmethod
    async def start(self) -> None:
        """Begin publishing due messages (also those other sidecars scheduled, for shared backends)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop publishing; messages not yet due stay scheduled where the backend keeps them."""

    @abstractmethod
    async def schedule(self, message: DelayedMessage, delay: float) -> None:
        """Hold `message` for `delay` seconds. Raises BackendUnavailableError when it cannot be stored."""

    def _start_loop(self) -> None:
        """Run `_loop` (publishing due messages) until `_stop_loop`."""
        self._task = asyncio.create_task(self._loop(), name=f"delay-queue-{self.name}")

    async def _stop_loop(self) -> None:
        await stop_task(self._task)

    @abstractmethod
    async def _loop(self) -> None:
        """Publish due messages, for ever."""

    async def publish(self, message: DelayedMessage) -> bool:
        try:
            await self.pubsub.publish(message.topic, message.data, message.metadata)
        except Exception as exc:  # a failed publish is retried, never lost
            log.warning("delayed message %s to %s/%s not published yet: %s", message.id, self.name, message.topic, exc)
            return False
        return True


def scheduler_for(pubsub: PubSub, name: str, metadata: Mapping[str, object]) -> DelayScheduler | None:
    """The scheduler of a pub/sub component, or None when it cannot delay (no
    PubSubFeature.DELAY)."""
    if PubSubFeature.DELAY not in pubsub.features:
        return None
    return pubsub.delay_scheduler(name, Metadata(metadata))
