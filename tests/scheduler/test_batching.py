import numpy as np
import pytest

from inferd.errors import ExecutionError
from inferd.scheduler.batching import concatenate, split


def test_concatenate_then_split_returns_each_request_its_rows() -> None:
    requests = [{"x": np.full((n, 2), n, np.float32)} for n in (1, 3, 2)]
    merged = concatenate(requests)
    assert merged["x"].shape == (6, 2)
    parts = split({"y": merged["x"] * 10}, [1, 3, 2])
    for request, part in zip(requests, parts, strict=True):
        np.testing.assert_array_equal(part["y"], request["x"] * 10)


def test_a_single_request_is_passed_through_without_copies() -> None:
    inputs = {"x": np.zeros((2, 2))}
    assert concatenate([inputs]) is inputs


def test_split_rejects_outputs_without_one_row_per_input_row() -> None:
    with pytest.raises(ExecutionError, match="one row per input row"):
        split({"y": np.zeros((3,))}, [2, 2])
