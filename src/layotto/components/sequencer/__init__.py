"""Sequencers: distributed, increasing ids."""

FACTORIES: dict[str, str] = {
    "in-memory": "layotto.components.sequencer.memory:InMemorySequencer",
}
