"""Configuration stores (Layotto's `config_store`)."""

FACTORIES: dict[str, str] = {}
