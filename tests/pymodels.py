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
