"""RequestChecks: a version's checks are built on its first request and dropped with the handle."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.dataplane.checks import RequestChecks
from inferd.errors import InvalidRequest
from inferd.model_config import ModelConfig
from inferd.runtimes.base import Signature
from inferd.types import InferRequest, Tensor, TensorSpec

SIGNATURE = Signature(inputs=(TensorSpec("x", "FP32", (-1,)),), outputs=(), max_batch_size=0)


class _Handle:
    """The parts of a LoadedModel the checks read; hashed by identity, as LoadedModel is."""

    def __init__(self, config: dict[str, object] | None = None) -> None:
        self.name = "m"
        self.signature = SIGNATURE
        self.config = ModelConfig.model_validate(config or {})


class _Registry:
    def __init__(self) -> None:
        self.served: set[object] = set()

    def serves(self, model: object) -> bool:
        return model in self.served


def _request(*values: float) -> InferRequest:
    return InferRequest("m", None, [Tensor("x", "FP32", np.array(values, np.float32))])


def test_a_handle_s_checks_are_built_once_and_applied() -> None:
    registry = _Registry()
    checks = RequestChecks(registry, 100, 10)  # type: ignore[arg-type]
    handle = _Handle({"inputs": [{"name": "x", "min": 0}]})
    registry.served.add(handle)
    checked = checks.prepare(handle, _request(1.0, 2.0))  # type: ignore[arg-type]
    np.testing.assert_array_equal(checked.arrays["x"], [1.0, 2.0])
    admission = checks.admissions[handle]  # type: ignore[index]
    with pytest.raises(InvalidRequest):
        checks.prepare(handle, _request(-1.0))  # type: ignore[arg-type]
    assert checks.admissions[handle] is admission  # type: ignore[index]


def test_a_replaced_handle_is_forgotten_when_its_successor_is_met() -> None:
    registry = _Registry()
    checks = RequestChecks(registry, 100, 10)  # type: ignore[arg-type]
    admissions = checks.admissions
    old, new = _Handle(), _Handle()
    registry.served.add(old)
    checks.prepare(old, _request(1.0))  # type: ignore[arg-type]
    registry.served = {new}  # a swap
    checks.prepare(new, _request(1.0))  # type: ignore[arg-type]
    assert list(checks.admissions) == [new]
    # Changed in place: the data plane reads this same table on every request.
    assert checks.admissions is admissions
