"""Worker processes of a Python model: a worker that cannot be restarted fails its instance's batches
at once and leaves the runtime unhealthy (the model not READY) until a retried load succeeds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pymodels
import pytest

from inferd.errors import ExecutionError, InstanceCrashed
from inferd.model_config import ModelConfig
from inferd.runtimes.processes import instance_restarts, runtime_healthy
from inferd.runtimes.registry import create_runtime

# Crashes on a negative input; its load fails while a file named "broken" sits beside model.py.
FRAGILE = """
import os
import numpy as np
from inferd import Model, Tensor

class Fragile(Model):
    inputs = [Tensor("x", "FP32", [-1])]
    outputs = [Tensor("y", "FP32", [-1])]
    max_batch_size = 4

    def load(self, path):
        if (path / "broken").exists():
            raise RuntimeError("weights unreadable")

    def predict(self, inputs):
        if (inputs["x"] < 0).any():
            os._exit(1)
        return {"y": inputs["x"]}
"""


def _eventually(condition: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_worker_that_cannot_restart_makes_the_model_unhealthy_until_a_retry_loads(tmp_path: Path) -> None:
    version = pymodels.write(tmp_path, "fragile", FRAGILE) / "1"
    runtime = create_runtime(version / "model.py", ModelConfig(instance_kind="process"))
    try:
        assert runtime.run(0, {"x": np.ones(2, np.float32)})["y"].tolist() == [1.0, 1.0]
        (version / "broken").touch()
        with pytest.raises(InstanceCrashed, match="exited with code 1"):
            runtime.run(0, {"x": -np.ones(1, np.float32)})
        assert instance_restarts(runtime) == 1
        _eventually(lambda: not runtime_healthy(runtime), "the failed restart")
        with pytest.raises(ExecutionError, match="could not be restarted .*weights unreadable.*; retrying"):
            runtime.run(0, {"x": np.ones(1, np.float32)})
        (version / "broken").unlink()
        _eventually(lambda: runtime_healthy(runtime), "a retried load to succeed")
        assert runtime.run(0, {"x": np.full(1, 3, np.float32)})["y"].tolist() == [3.0]
    finally:
        runtime.close()
