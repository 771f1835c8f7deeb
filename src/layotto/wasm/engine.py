"""The sidecar's one wasmtime engine, and the clock of the functions' deadlines.

Deadlines use epoch interruption: every instance's store is armed with a number of ticks, and
a thread of its own advances the engine's epoch each `TICK`, so a runaway guest traps within a
tick of its deadline whatever the event loop is doing. A thread, not the loop: the clock must
keep going when the loop is busy."""

from __future__ import annotations

import threading

import wasmtime

from layotto.config.model import WasmFunctionSpec
from layotto.wasm.instance import TICK, Program, compile_program

__all__ = ["WasmEngine"]


class WasmEngine:
    def __init__(self, tick: float = TICK) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self._tick = tick
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="wasm-epoch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._tick):
            self.engine.increment_epoch()

    def stop(self) -> None:
        """The thread ends within a tick; nothing waits for it."""
        self._stopping.set()
        self._thread = None

    def compile(self, spec: WasmFunctionSpec) -> Program:
        """Blocking: call it off the event loop."""
        return compile_program(self.engine, spec)
