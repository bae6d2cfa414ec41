"""``dynamic_batching.target_p99_ms`` (SLO-aware adaptive batching) in config.yaml, and its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.errors import ModelLoadError
from inferd.model_config import load_model_config
from inferd.repository.loader import batch_policy
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec("x", "FP32", (4,)),), outputs=(TensorSpec("y", "FP32", (4,)),), max_batch_size=8
)


def _config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("yaml", "target_ns", "ceiling_ns"),
    [
        ("dynamic_batching: {target_p99_ms: 20}\n", 20_000_000, 0),
        ("dynamic_batching: {target_p99_ms: 2.5, max_queue_delay_ms: 1}\n", 2_500_000, 1_000_000),
        # Triton's spelling of the delay works as the ceiling too.
        (
            "dynamic_batching:\n  target_p99_ms: 20\n  max_queue_delay_microseconds: 500\n",
            20_000_000,
            500_000,
        ),
        ("dynamic_batching: {max_queue_delay_ms: 2}\n", 0, 2_000_000),
    ],
)
def test_the_target_reaches_the_batch_policy(
    tmp_path: Path, yaml: str, target_ns: int, ceiling_ns: int
) -> None:
    policy = batch_policy(load_model_config(_config(tmp_path, yaml)), SIGNATURE, tmp_path)
    assert policy.dynamic
    assert policy.target_p99_ns == target_ns
    assert policy.max_queue_delay_ns == ceiling_ns


@pytest.mark.parametrize(
    ("yaml", "problem"),
    [
        (
            "dynamic_batching: {target_p99_ms: 0}\n",
            "'dynamic_batching.target_p99_ms': Input should be greater than 0",
        ),
        ("dynamic_batching: {target_p99_ms: -5}\n", "greater than 0"),
        ("dynamic_batching: {target_p99_ms: 90000}\n", "less than or equal to 60000"),
        ("dynamic_batching: {target_p99_ms: fast}\n", "'dynamic_batching.target_p99_ms'"),
        ("dynamic_batching: {target_p99_ms: 5, max_queue_delay_ms: 10}\n", "exceeds target_p99_ms 5"),
        (
            "dynamic_batching: {max_queue_delay_ms: 1, max_queue_delay_microseconds: 1000}\n",
            "not both",
        ),
        ("dynamic_batching: {max_queue_delay_microseconds: soon}\n", "must be a number"),
        ("dynamic_batching: {target_p99: 20}\n", "'dynamic_batching.target_p99': unknown key"),
    ],
)
def test_a_bad_target_is_refused_at_load_naming_the_key(tmp_path: Path, yaml: str, problem: str) -> None:
    with pytest.raises(ModelLoadError, match="config.yaml") as raised:
        load_model_config(_config(tmp_path, yaml))
    assert problem in str(raised.value)
