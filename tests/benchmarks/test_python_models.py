"""Smoke test of benchmarks/python_models.py against inferd only (no peer is installed): both inferd
targets start, answer the identity, and the JSON holds their figures and the verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_inferd_targets_run_and_write_json(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "python_models.py"), "--targets",
               "inferd-onnx,inferd-python", "--duration", "1", "--warmup", "0.2", "--concurrency", "8",
               "--cache-dir", str(tmp_path / "peers"), "--out-json", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(out.read_text())
    for target in ("inferd-onnx", "inferd-python"):
        figures = document["results"][target]
        assert "error" not in figures, figures
        assert figures["peak_req_per_s"] > 0 and figures["c1_p50_us"] > 0
        assert figures["peak_server_cpu_us_per_req"] > 0
    assert any(line.startswith("inferd-python / inferd-onnx") for line in document["verdicts"])
    assert not (tmp_path / "peers").exists() or not any((tmp_path / "peers").iterdir())
