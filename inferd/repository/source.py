"""Scan a model repository directory: ``<model>/<version>/model.onnx``, versions positive integers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.onnx"


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str
    directory: Path
    # Positive integer version -> model file, ascending.
    versions: dict[int, Path]


def scan_repository(root: Path) -> list[ModelSource]:
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} is not a directory")
    sources = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = {
            int(v.name): v / MODEL_FILE
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
            int(v.name): v / MODEL_FILE
            for v in model_dir.iterdir()
            if v.is_dir() and v.name.isdigit() and int(v.name) > 0
        }
    except FileNotFoundError:  # removed while it was read
        return None
    return ModelSource(model_dir.name, model_dir, dict(sorted(versions.items())))
