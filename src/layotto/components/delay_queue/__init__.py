"""Delayed publishing for pub/sub components (upstream's DelayQueue extension).

Upstream serves PublishDelayMessage only with pub/sub components that can delay natively
(azure.servicebus). Here a scheduler holds each delayed message and publishes it through the
component when it is due; the pub/sub components that make one declare PubSubFeature.DELAY
(in-memory: `memory.MemoryScheduler`, redis: `redis.RedisScheduler`).
"""
