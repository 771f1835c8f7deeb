"""Name resolution: app id -> the address of a sidecar serving that app."""

FACTORIES: dict[str, str] = {}
