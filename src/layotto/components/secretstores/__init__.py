"""Secret stores (Dapr's `secretstores.*` types)."""

FACTORIES: dict[str, str] = {}
