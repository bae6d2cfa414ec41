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
    assert f"wrote mlp, tabular to {tmp_path}" in done.stdout
    assert "also available: --with cnn,text (pip install 'inferd[examples-heavy]')" in done.stdout
    assert (tmp_path / "mlp" / "1" / "model.onnx").is_file()
