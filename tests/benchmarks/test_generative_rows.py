"""Smoke test of benchmarks/generative_rows.py on the tiny decoder: every case of every variant is
timed and printed, with the batched-against-alone comparison (nothing here asserts on speed or on
how close the rows are: that depends on the CPU's kernels)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_case_of_every_variant_is_printed(tmp_path: Path, tiny_version: Path) -> None:
    shutil.copytree(tiny_version, tmp_path / "tiny" / "1")
    command = [sys.executable, str(ROOT / "benchmarks" / "generative_rows.py"), str(tmp_path / "tiny"),
               "--levels", "4,0", "--threads", "1", "--rows", "1,3", "--prompts", "1,2",
               "--prompt-tokens", "4", "--context", "5", "--rounds", "2", "--same-as-alone"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # A 1-row step is the alone step; how far 3 rows land from it depends on the CPU's kernels.
    assert [line.rsplit(" ", 1)[0] for line in lines if not line.startswith(" ")] == [
        "tiny level 4, 1 thread: max |logit batched - alone| 1 rows 0, 3 rows",
        "tiny level 0, 1 thread: max |logit batched - alone| 1 rows 0, 3 rows",
        "tiny level 4, 1",
        "tiny level 0, 1",
    ]
    cases = [line.split()[:2] for line in lines if line.startswith(" ")]
    expected = [["decode", "1"], ["decode", "3"], ["prefill", "4"], ["prefill", "8"]]
    assert cases == expected * 2
    assert all("ms per token" in line for line in lines if line.startswith(" "))
