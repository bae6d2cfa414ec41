"""Custom Python models (model.py files) written on the fly for the tests."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

# FP32 [batch, 4] -> OUTPUT0 = INPUT0 + PLUS: the same signature as modelfactory.add_constant, so the
# lifecycle load generators drive it unchanged.
ADD_CONSTANT = """
import numpy as np
from inferd import Model, Tensor

class AddConstant(Model):
    inputs = [Tensor("INPUT0", "FP32", [-1, 4])]
    outputs = [Tensor("OUTPUT0", "FP32", [-1, 4])]
    max_batch_size = 8

    def predict(self, inputs):
        return {"OUTPUT0": inputs["INPUT0"] + np.float32(PLUS)}
"""


def write(repo: Path, name: str, source: str, version: int = 1, config: str | None = None) -> Path:
    """Write ``repo/name/<version>/model.py`` (and config.yaml); return repo/name."""
    model_dir = repo / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    (model_dir / str(version) / "model.py").write_text(textwrap.dedent(source))
    if config is not None:
        (model_dir / "config.yaml").write_text(textwrap.dedent(config))
    return model_dir


def add_constant(value: float) -> str:
    return ADD_CONSTANT.replace("PLUS", repr(value))


def write_version(model_dir: Path, version: int, source: str) -> None:
    """A new version directory, built aside and renamed into place: a polling server never sees it
    half written."""
    staging = model_dir / f".staging-{version}-{time.monotonic_ns()}"
    staging.mkdir()
    (staging / "model.py").write_text(textwrap.dedent(source))
    staging.rename(model_dir / str(version))


# FP32 [batch, 2] -> y = x * parameters["scale"], with what the model saw: ``seen`` (each row: the
# parameters dict as sorted JSON, so 2 and 2.0 read apart) and ``rows`` (each row: the rows of its
# predict call). A string parameter "gate" names a file the call waits for (up to 60 s), so a test
# can hold the one instance busy while it queues requests behind it.
SCALE_BY_PARAMETER = """
import json
import os
import time

import numpy as np
from inferd import Model, Tensor


def _wait_for(path):
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)


class ScaleByParameter(Model):
    inputs = [Tensor("x", "FP32", [-1, 2])]
    outputs = [
        Tensor("y", "FP32", [-1, 2]),
        Tensor("seen", "BYTES", [-1, 1]),
        Tensor("rows", "INT32", [-1, 1]),
    ]
    max_batch_size = 8

    def predict(self, inputs, parameters):
        if "gate" in parameters:
            _wait_for(parameters["gate"])
        x = inputs["x"]
        rows = x.shape[0]
        seen = json.dumps(parameters, sort_keys=True).encode()
        return {
            "y": x * parameters.get("scale", 1),
            "seen": np.full((rows, 1), seen, dtype=object),
            "rows": np.full((rows, 1), rows, dtype=np.int32),
        }

    def predict_stream(self, inputs, parameters):
        for step in range(1, int(parameters.get("steps", 1)) + 1):
            out = self.predict(inputs, parameters)
            out["y"] = out["y"] * step
            yield out
"""
