"""Observability: the Prometheus registry (`metrics`) and distributed tracing (`tracing`).

Used by the APIs, the runtime and the sidecar; imports neither `layotto.api` nor
`layotto.runtime` (an import-linter contract in pyproject.toml keeps it so).
"""
