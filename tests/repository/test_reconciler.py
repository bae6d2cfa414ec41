"""The reconciler reads the disk off the event loop: a config.yaml that takes long to read (a FIFO
whose writer answers only when the loop tells it to) must not stop the loop meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from inferd.model_config import ModelConfig
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

WAIT_S = 5.0


class FactorRuntime:
    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.factor = float(path.read_text())
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 1

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * self.factor}

    def close(self) -> None:
        pass


class SlowConfig:
    """config.yaml as a FIFO: each read gets the text only once ``go`` is set, or after WAIT_S."""

    def __init__(self, path: Path, text: str) -> None:
        os.mkfifo(path)
        self.path, self.text = path, text
        self.go, self.stop = threading.Event(), threading.Event()
        self.timed_out = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError), open(self.path, "w") as fifo:  # waits for a reader
                if not self.go.wait(WAIT_S):
                    self.timed_out += 1
                fifo.write(self.text)

    async def read_while_the_loop_runs(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work``; only a running event loop lets its config reads finish in time."""
        self.go.clear()
        task = asyncio.ensure_future(work())
        await asyncio.sleep(0.2)  # a loop blocked inside a read never gets past this before WAIT_S
        self.go.set()
        await task

    def close(self) -> None:
        self.stop.set()
        self.go.set()
        while self._thread.is_alive():  # a writer waiting for a reader: give it one
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
            self._thread.join(0.05)


def test_start_up_poll_and_load_read_config_yaml_off_the_event_loop(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_text("2")
    config = SlowConfig(tmp_path / "m" / "config.yaml", "max_batch_size: 8\n")

    async def scenario() -> None:
        repository = ModelRepository(tmp_path, FactorRuntime)
        await config.read_while_the_loop_runs(lambda: repository.load_initial(None, exit_on_error=True))
        await config.read_while_the_loop_runs(repository.poll)
        await config.read_while_the_loop_runs(lambda: repository.load("m"))
        assert repository.get("m").config.max_batch_size == 8
        assert [row["state"] for row in await repository.index()] == ["READY"]
        await repository.close()

    try:
        asyncio.run(scenario())
    finally:
        config.close()
    assert config.timed_out == 0, "a config read blocked the event loop"
