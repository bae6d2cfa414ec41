"""The cold-start figures a load logs: only what was measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferd.errors import ModelLoadError
from inferd.model_config import WarmupSample
from inferd.repository.warmup import ColdStart, warm_up
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec


def test_describe_with_warm_up() -> None:
    figures = ColdStart(load_ms=4.12345, first_inference_ms=0.36, warm_p50_ms=0.027, rss_delta_mb=12.54)
    assert figures.describe() == "load 4.123 ms, first inference 0.36 ms, warm p50 0.027 ms, RSS +12.5 MiB"


def test_describe_without_warm_up_or_rss() -> None:
    assert ColdStart(load_ms=4.1, first_inference_ms=None, warm_p50_ms=None).describe() == (
        "load 4.1 ms, no warm-up"
    )


def test_describe_one_warm_up_request_and_shrinking_memory() -> None:
    figures = ColdStart(load_ms=2.0, first_inference_ms=0.5, warm_p50_ms=None, rss_delta_mb=-0.25)
    assert figures.describe() == "load 2.0 ms, first inference 0.5 ms, RSS -0.2 MiB"


class CountingRuntime:
    """Answers at once and counts its runs; the warm-up's stop check is what is tested."""

    def __init__(self) -> None:
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 2
        self.runs = 0

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs += 1
        return {"y": inputs["x"]}


def test_a_warm_up_runs_every_sample_on_every_instance(tmp_path: Path) -> None:
    runtime = CountingRuntime()
    figures = warm_up(runtime, (WarmupSample(count=3), WarmupSample(batch_size=2)), tmp_path, 1.0)
    assert runtime.runs == (3 + 1) * 2
    assert figures.first_inference_ms is not None and figures.warm_p50_ms is not None


def test_a_warm_up_told_to_stop_ends_before_its_next_run(tmp_path: Path) -> None:
    # An abandoned load's warm-up (its deadline passed) must not run its remaining requests.
    runtime = CountingRuntime()
    with pytest.raises(ModelLoadError, match="warm-up stopped at the load deadline"):
        warm_up(runtime, (WarmupSample(count=1000),), tmp_path, 1.0, stop=lambda: runtime.runs >= 5)
    assert runtime.runs == 5
