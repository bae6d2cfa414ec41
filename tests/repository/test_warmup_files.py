"""Warm-up data files are read only from inside the model's directory, symlinks followed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferd.errors import ModelLoadError
from inferd.model_config import WarmupSample
from inferd.repository.warmup import sample_inputs
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

SIGNATURE = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)


def _inputs(model_dir: Path, file: str) -> dict[str, np.ndarray]:
    sample = WarmupSample(data="file", file=file)
    return sample_inputs(sample, SIGNATURE, model_dir, np.random.default_rng(0))


def _error(model_dir: Path, file: str) -> str:
    with pytest.raises(ModelLoadError) as raised:
        _inputs(model_dir, file)
    return raised.value.message


def test_a_file_inside_is_read(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    (model_dir / "data").mkdir(parents=True)
    np.savez(model_dir / "data" / "warm.npz", x=np.ones((2, 4), dtype=np.float32))
    (model_dir / "alias.npz").symlink_to(model_dir / "data" / "warm.npz")  # a link that stays inside
    for file in ("data/warm.npz", "alias.npz"):
        assert _inputs(model_dir, file)["x"].shape == (2, 4)


def test_symlinks_out_of_the_model_directory_answer_alike_whatever_is_there(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    outside = tmp_path / "outside.npz"
    np.savez(outside, x=np.ones((1, 4), dtype=np.float32))
    (model_dir / "exists.npz").symlink_to(outside)
    (model_dir / "missing.npz").symlink_to(tmp_path / "missing.npz")
    (model_dir / "sub").symlink_to(tmp_path, target_is_directory=True)
    answers = {
        _error(model_dir, file).replace(file, "FILE")
        for file in ("exists.npz", "missing.npz", "sub/outside.npz", "sub/nothing.npz")
    }
    assert answers == {f"{model_dir}/FILE: warm-up file is not inside the model directory"}


def test_a_missing_file_inside_says_so_without_the_resolved_path(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    message = _error(model_dir, "absent.npz")
    assert message == f"{model_dir}/absent.npz: cannot read warm-up data: No such file or directory"
