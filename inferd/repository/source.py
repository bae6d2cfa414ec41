"""Scan a model repository directory: ``<model>/<version>/<model file>``, versions positive integers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inferd.runtimes.registry import MODEL_FILES

MODEL_FILE = "model.onnx"


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str
    directory: Path
    # Positive integer version -> model file, ascending (the platform, from config.yaml, may pick
    # another file of the same directory: see inferd.runtimes.registry).
    versions: dict[int, Path]


def scan_repository(root: Path) -> list[ModelSource]:
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} is not a directory")
    sources = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = {
            int(v.name): _model_file(v)
            for v in model_dir.iterdir()
            if v.is_dir() and v.name.isdigit() and int(v.name) > 0
        }
        sources.append(ModelSource(model_dir.name, model_dir, dict(sorted(versions.items()))))
    return sources


def scan_model(model_dir: Path) -> ModelSource | None:
    """One model directory's versions; None when the directory is gone."""
    if not model_dir.is_dir():
        return None
    try:
        versions = {
            int(v.name): _model_file(v)
            for v in model_dir.iterdir()
            if v.is_dir() and v.name.isdigit() and int(v.name) > 0
        }
    except FileNotFoundError:  # removed while it was read
        return None
    return ModelSource(model_dir.name, model_dir, dict(sorted(versions.items())))


def _model_file(version_dir: Path) -> Path:
    """The first platform's model file that is there (model.onnx when there is none)."""
    return next((p for p in (version_dir / n for n in MODEL_FILES) if p.is_file()), version_dir / MODEL_FILE)
