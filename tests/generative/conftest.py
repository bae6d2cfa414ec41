from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tinydecoder import build_tiny_decoder


@pytest.fixture(scope="session")
def tiny_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny decoder's version directory, built once per session; copy it, never change it."""
    return build_tiny_decoder(tmp_path_factory.mktemp("tiny-decoder") / "1")


@pytest.fixture
def tiny_repository(tmp_path: Path, tiny_version: Path) -> Path:
    """A model repository holding the tiny decoder as model ``tiny`` (platform: generative)."""
    model_dir = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_version, model_dir / "1")
    (model_dir / "config.yaml").write_text("platform: generative\n")
    return tmp_path / "models"
