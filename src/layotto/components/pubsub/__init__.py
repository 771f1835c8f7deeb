"""Pub/Sub brokers (Dapr's `pubsub.*` types)."""

FACTORIES: dict[str, str] = {
    "in-memory": "layotto.components.pubsub.memory:InMemoryPubSub",
    "redis": "layotto.components.pubsub.redis:RedisStreamsPubSub",
    "nats": "layotto.components.pubsub.nats:JetStreamPubSub",
    "jetstream": "layotto.components.pubsub.nats:JetStreamPubSub",
    "rabbitmq": "layotto.components.pubsub.rabbitmq:RabbitMQPubSub",
    "mqtt": "layotto.components.pubsub.mqtt:MqttPubSub",
}
