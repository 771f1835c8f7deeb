"""Distributed lock stores."""

FACTORIES: dict[str, str] = {}
