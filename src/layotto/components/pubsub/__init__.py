"""Pub/Sub brokers (Dapr's `pubsub.*` types)."""

FACTORIES: dict[str, str] = {}
