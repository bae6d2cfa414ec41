"""How a model's config.yaml and the server's defaults become its batch policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inferd.model_config import ModelConfig
from inferd.repository.loader import SchedulerDefaults, batch_policy
from inferd.runtimes.base import Signature
from inferd.scheduler.lone import INLINE_AUTO
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


def test_auto_inline_applies_to_bounded_computations_only() -> None:
    here = Path("m")
    assert batch_policy(ModelConfig(), SIGNATURE, here, "auto").inline_max_ns == INLINE_AUTO
    for platform in ("pytorch", "sklearn", "xgboost", "lightgbm"):
        assert batch_policy(ModelConfig(), SIGNATURE, here, "auto", platform=platform).inline_max_ns < 0
    # A Python model's code may block, and an inline run escapes the execution timeout: opt-in only.
    assert batch_policy(ModelConfig(), SIGNATURE, here, "auto", platform="python").inline_max_ns == 0
    own = ModelConfig(inline_execution_max_us=150)
    assert batch_policy(own, SIGNATURE, here, "auto", platform="python").inline_max_ns == 150_000
    # A model asks for auto where the server fixes a bound; process instances never run inline.
    assert batch_policy(ModelConfig(inline_execution_max_us="auto"), SIGNATURE, here, 0).inline_max_ns < 0
    process = ModelConfig(instance_kind="process", inline_execution_max_us="auto")
    assert batch_policy(process, SIGNATURE, here).inline_max_ns == 0


@pytest.mark.parametrize("value", [-1, 10_001, "fast"])
def test_a_bad_inline_bound_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ValidationError, match="inline_execution_max_us"):
        ModelConfig(inline_execution_max_us=value)  # type: ignore[arg-type]


def test_queue_bound_and_execution_timeout_default_to_the_servers() -> None:
    here = Path(".")
    server = SchedulerDefaults(max_queue_size=7, execution_timeout_s=2.5, drain_timeout_s=4)
    policy = batch_policy(ModelConfig(), SIGNATURE, here, defaults=server)
    assert (policy.max_queue_size, policy.execution_timeout_ns, policy.drain_timeout_ns) == (7, 2.5e9, 4e9)
    # Without any setting: a bounded queue and a timeout, never unbounded by accident.
    plain = batch_policy(ModelConfig(), SIGNATURE, here)
    assert plain.max_queue_size == 1024 and plain.execution_timeout_ns == 60 * 10**9


def test_zero_in_config_yaml_means_unbounded_as_in_triton() -> None:
    server = SchedulerDefaults(max_queue_size=7, execution_timeout_s=2.5)
    own = ModelConfig(max_queue_size=0, execution_timeout_s=0)
    policy = batch_policy(own, SIGNATURE, Path("."), defaults=server)
    assert (policy.max_queue_size, policy.execution_timeout_ns) == (0, 0)


def test_process_instances_never_run_inline_and_kind_cpu_means_thread() -> None:
    process = ModelConfig(instance_kind="process", inline_execution_max_us=100)
    assert batch_policy(process, SIGNATURE, Path("m"), inline_default_us=120).inline_max_ns == 0
    assert ModelConfig(instance_kind="KIND_CPU").instance_kind == "thread"  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="instance_kind"):
        ModelConfig(instance_kind="KIND_GPU")  # type: ignore[arg-type]
