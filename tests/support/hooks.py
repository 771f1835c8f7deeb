"""What only tests ask of components, kept out of the block interfaces.

These read a component's bookkeeping (the configuration stores' subscription hub and watch
tasks) for tests that check that nothing is left running; no API or runtime code needs them.
"""

from __future__ import annotations

import asyncio

from layotto.components.configuration.base import ConfigurationStore


def subscription_count(store: ConfigurationStore) -> int:
    """Subscriptions the store still serves."""
    return len(store.hub)


def watcher_count(store: ConfigurationStore) -> int:
    """Backend watches the store runs for its subscribers (one per app id, in the etcd and redis
    stores; the in-memory store runs none): 0 once every subscription is closed."""
    watchers: dict[str, asyncio.Task[None]] = getattr(store, "_watchers", {})
    return len(watchers)
