"""Sample files: npz and JSONL of V2 requests, and the errors for files that cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inferd.optimize.samples import SampleError, load_samples


def _request(rows: list[list[float]]) -> str:
    flat = [v for row in rows for v in row]
    tensor = {"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": flat}
    return json.dumps({"inputs": [tensor]})


def test_jsonl_requests_stack_rows_for_a_batching_model(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(_request([[1, 2], [3, 4]]) + "\n\n" + _request([[5, 6]]) + "\n")
    samples = load_samples(path, batched=True)
    assert samples.kind == "jsonl" and samples.rows == 3
    np.testing.assert_array_equal(samples.arrays["x"], [[1, 2], [3, 4], [5, 6]])
    assert samples.arrays["x"].dtype == np.float32


def test_jsonl_requests_are_one_row_each_for_a_model_without_batching(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(_request([[1, 2]]) + "\n" + _request([[3, 4]]) + "\n")
    assert load_samples(path, batched=False).arrays["x"].shape == (2, 1, 2)


def test_npz_samples(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    np.savez(path, a=np.zeros((5, 3)), b=np.ones((5, 1)))
    assert load_samples(path, batched=True).rows == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "requests.jsonl:1: not JSON"),
        ('{"inputs": []}\n', "non-empty 'inputs'"),
        ('{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}\n', "does not fit"),
        ('{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}\n', "only numeric"),
        ('{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}\n', "non-negative"),
        ("\n", "no samples"),
    ],
)
def test_unusable_jsonl_is_refused_naming_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(content)
    with pytest.raises(SampleError, match=message):
        load_samples(path, batched=True)


def test_inputs_with_different_row_counts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    np.savez(path, a=np.zeros((5, 3)), b=np.ones((4, 1)))
    with pytest.raises(SampleError, match="different numbers of rows"):
        load_samples(path, batched=True)
