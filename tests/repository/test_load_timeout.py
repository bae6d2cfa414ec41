"""A load that does not finish in time fails, frees its model's lock, and its late session is closed."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from inferd.errors import ModelLoadError
from inferd.model_config import ModelConfig
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

WAIT_S = 10
# Loads of a model file reading "hang" wait for this; the test opens it once the load gave up.
HANG = threading.Event()
CREATED: list[SlowRuntime] = []


class SlowRuntime:
    def __init__(self, path: Path, config: ModelConfig) -> None:
        if path.read_text() == "hang":
            HANG.wait(WAIT_S)
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 1
        self.closed = False
        CREATED.append(self)

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}

    def close(self) -> None:
        self.closed = True


def _write(root: Path, version: int, text: str) -> None:
    directory = root / "m" / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_text(text)


@pytest.fixture(autouse=True)
def _reset() -> None:
    HANG.clear()
    CREATED.clear()


def test_a_hung_load_fails_at_the_timeout_and_frees_the_model(tmp_path: Path) -> None:
    _write(tmp_path, 1, "hang")

    async def scenario() -> ModelRepository:
        repository = ModelRepository(tmp_path, SlowRuntime, load_timeout_s=0.3)
        with pytest.raises(ModelLoadError, match="load timeout of 0.3 s"):
            await repository.load("m")
        row = (await repository.index())[0]
        assert row["state"] == "UNAVAILABLE" and "load timeout" in row["reason"]
        # The lock is free: a fixed model loads at once instead of queueing behind the hung one.
        _write(tmp_path, 1, "ok")
        await asyncio.wait_for(repository.load("m"), WAIT_S)
        assert repository.get("m").version == "1"
        return repository

    repository = asyncio.run(scenario())
    served = repository.get("m").runtime
    assert isinstance(served, SlowRuntime)
    HANG.set()  # the hung load finishes now: its session must be closed, never served
    for thread in [t for t in threading.enumerate() if t.name == "inferd-load"]:
        thread.join(WAIT_S)
    late = [runtime for runtime in CREATED if runtime is not served]
    assert len(late) == 1 and late[0].closed
    assert repository.get("m").runtime is served and not served.closed
