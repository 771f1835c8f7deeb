"""Output (and input) bindings (Dapr's `bindings.*` types)."""

FACTORIES: dict[str, str] = {}
