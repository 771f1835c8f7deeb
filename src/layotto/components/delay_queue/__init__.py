"""Delayed publishing for pub/sub components (upstream's DelayQueue extension).

Upstream serves PublishDelayMessage only with pub/sub components that can delay natively
(azure.servicebus). Here a scheduler holds each delayed message and publishes it through the
component when it is due; the pub/sub component types that have one are "delay-capable".
"""

#: pub/sub component type -> "module:Class" of its scheduler.
SCHEDULERS: dict[str, str] = {
    "in-memory": "layotto.components.delay_queue.memory:MemoryScheduler",
    "redis": "layotto.components.delay_queue.redis:RedisScheduler",
}
