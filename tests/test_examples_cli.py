"""`inferd examples build` without the heavy extra's models says how to get them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_build_names_the_optional_models(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "inferd", "examples", "build", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote mlp, tabular, fraud-sklearn, fraud-sklearn-onnx to {tmp_path}" in done.stdout
    assert (
        "also available: --with cnn,text,text-embedding (pip install 'inferd[examples-heavy]')" in done.stdout
    )
    assert (tmp_path / "mlp" / "1" / "model.onnx").is_file()


def _run_without_sklearn(*args: str) -> subprocess.CompletedProcess[str]:
    """`inferd examples build` in a Python where scikit-learn cannot be imported (as without the extra)."""
    code = "import sys; sys.modules['sklearn'] = None; from inferd.cli import main; main(prog_name='inferd')"
    return subprocess.run(
        [sys.executable, "-c", code, "examples", "build", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_build_without_the_examples_extra_says_so(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    done = _run_without_sklearn(str(dest))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "Error: building tabular, fraud-sklearn, fraud-sklearn-onnx needs scikit-learn, the examples "
        "extra: pip install 'inferd[examples]'"
    ]
    # Checked before anything is written: no half-written repository.
    assert not dest.exists()


def test_build_keeps_a_complete_repository_without_the_extra(tmp_path: Path) -> None:
    # The tabular model is there already: nothing to build, so the extra is not needed.
    (tmp_path / "mlp").mkdir()
    for name in ("tabular", "fraud-sklearn", "fraud-sklearn-onnx"):
        (tmp_path / name).mkdir()
    done = _run_without_sklearn(str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "kept mlp, tabular, fraud-sklearn, fraud-sklearn-onnx in" in done.stdout
