"""Without torch (the pytorch extra), a PyTorch model's load fails with one line naming what to
install, never a traceback. torch is blocked in a subprocess, so this runs whether or not it is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_without_torch_a_pytorch_model_fails_to_load_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "mlp" / "1").mkdir(parents=True)
    (root / "mlp" / "1" / "model.pt").write_bytes(b"never read: torch is missing")
    code = "import sys; sys.modules['torch'] = None; from inferd.cli import main; main(prog_name='inferd')"
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", str(root), "--http-port", "0", "--grpc-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    # The load is logged as every failed load is; the message itself is that one line, and it ends
    # the output.
    assert done.stderr.splitlines()[-1] == (
        "inferd: cannot load the model repository: mlp/1/model.pt: serving PyTorch models needs torch: "
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, "
        "then pip install 'inferd[pytorch]'"
    )
