"""How a model's config.yaml and the server's defaults become its batch policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inferd.model_config import ModelConfig
from inferd.repository.loader import batch_policy
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec("x", "FP32", (4,)),), outputs=(TensorSpec("y", "FP32", (4,)),), max_batch_size=8
)


def test_inline_execution_follows_the_server_default_unless_the_model_sets_its_own() -> None:
    here = Path("m")
    assert batch_policy(ModelConfig(), SIGNATURE, here).inline_max_ns == 0
    assert batch_policy(ModelConfig(), SIGNATURE, here, inline_default_us=120).inline_max_ns == 120_000
    own = ModelConfig(inline_execution_max_us=30)
    assert batch_policy(own, SIGNATURE, here, inline_default_us=120).inline_max_ns == 30_000
    # A model may also opt out where the server opts in.
    off = ModelConfig(inline_execution_max_us=0)
    assert batch_policy(off, SIGNATURE, here, inline_default_us=120).inline_max_ns == 0


@pytest.mark.parametrize("value", [-1, 10_001, "fast"])
def test_a_bad_inline_bound_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ValidationError, match="inline_execution_max_us"):
        ModelConfig(inline_execution_max_us=value)  # type: ignore[arg-type]
