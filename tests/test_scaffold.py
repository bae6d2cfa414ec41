"""inferd new-model: the scaffold serves, and its own test passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from inferd import testing
from inferd.cli import main
from inferd.scaffold import class_name, new_model


def test_the_scaffolded_test_passes(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new-model", "text-stats", str(tmp_path), "--platform", "python"])
    assert result.exit_code == 0, result.output
    model_dir = tmp_path / "text-stats"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()) == [
        "1/model.py",
        "config.yaml",
        "test_text_stats.py",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(model_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout


def test_the_scaffolded_model_loads_as_a_python_model(tmp_path: Path) -> None:
    new_model("m", "python", tmp_path)
    with testing.load(tmp_path / "m" / "1") as model:
        out = model.infer({"text": ["abc"]})
    assert out["upper"].tolist() == [b"ABC"] and out["length"].tolist() == [3]


def test_names_taken_or_unusable_are_refused(tmp_path: Path) -> None:
    new_model("m", "python", tmp_path)
    with pytest.raises(ValueError, match="already exists"):
        new_model("m", "python", tmp_path)
    with pytest.raises(ValueError, match="model name '../x'"):
        new_model("../x", "python", tmp_path)
    result = CliRunner().invoke(main, ["new-model", "m", str(tmp_path)])
    assert result.exit_code == 1 and "already exists" in result.output


def test_class_names() -> None:
    assert class_name("text-stats.v2") == "TextStatsV2"
    assert class_name("9lives") == "Model9lives"
