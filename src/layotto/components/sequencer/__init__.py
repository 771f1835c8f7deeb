"""Sequencers: distributed, increasing ids."""

FACTORIES: dict[str, str] = {}
