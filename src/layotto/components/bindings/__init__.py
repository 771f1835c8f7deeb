"""Output and input bindings (Dapr's `bindings.*` types); input is `BindingFeature.INPUT`."""

FACTORIES: dict[str, str] = {
    "http": "layotto.components.bindings.http:HttpBinding",
    "redis": "layotto.components.bindings.redis_input:RedisInputBinding",
    "postgres": "layotto.components.bindings.postgres_input:PostgresInputBinding",
    "postgresql": "layotto.components.bindings.postgres_input:PostgresInputBinding",
    "cron": "layotto.components.bindings.cron:CronBinding",
    "rabbitmq": "layotto.components.bindings.rabbitmq:RabbitMQBinding",
    "mqtt3": "layotto.components.bindings.mqtt:MqttBinding",
    "mqtt": "layotto.components.bindings.mqtt:MqttBinding",
}
