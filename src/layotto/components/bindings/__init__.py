"""Output (and input) bindings (Dapr's `bindings.*` types)."""

FACTORIES: dict[str, str] = {
    "http": "layotto.components.bindings.http:HttpBinding",
    "redis": "layotto.components.bindings.redis:RedisBinding",
    "postgres": "layotto.components.bindings.postgres:PostgresBinding",
    "postgresql": "layotto.components.bindings.postgres:PostgresBinding",
}
