from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# tiny_version (the tiny decoder, built once per session) is in tests/conftest.py.


@pytest.fixture
def tiny_repository(tmp_path: Path, tiny_version: Path) -> Path:
    """A model repository holding the tiny decoder as model ``tiny`` (platform: generative)."""
    model_dir = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_version, model_dir / "1")
    (model_dir / "config.yaml").write_text("platform: generative\n")
    return tmp_path / "models"
