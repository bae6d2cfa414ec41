"""ORT memory options from config.yaml reach the sessions."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import pytest

from inferd.model_config import ModelConfig
from inferd.runtimes.onnx import _session_options


@pytest.mark.parametrize("enabled", [True, False])
def test_arena_and_memory_pattern_follow_the_config(tmp_path: Path, enabled: bool) -> None:
    mf.add_constant(tmp_path / "model.onnx", 1.0)
    config = ModelConfig.model_validate(
        {"onnxruntime": {"enable_cpu_mem_arena": enabled, "enable_mem_pattern": enabled}}
    )
    options = _session_options(config.onnxruntime, instances=1)
    assert options.enable_cpu_mem_arena is enabled
    assert options.enable_mem_pattern is enabled
