"""Scan a model repository directory: ``<model>/<version>/<model file>``, versions positive integers.

Only directories whose names are model names (inferd/names.py) and that resolve inside the repository
are models; others are skipped with one warning each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from inferd.repository.paths import model_directory
from inferd.repository.single import is_bare
from inferd.runtimes.registry import MODEL_FILES

log = logging.getLogger(__name__)

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
    return [_source(model_dir) for model_dir in sorted(p for p in root.iterdir() if _is_model_dir(root, p))]


def find_model(root: Path, name: str) -> ModelSource | None:
    """The model ``name`` of the repository at ``root``. None when it is absent, ``name`` is not a
    model name, or its directory resolves outside the repository: callers cannot tell these apart."""
    model_dir = model_directory(root, name)
    return None if model_dir is None else scan_model(model_dir)


# Names already warned about, so a poll every few seconds does not repeat the warning; bounded.
_skipped: set[str] = set()


def _is_model_dir(root: Path, path: Path) -> bool:
    if path.name.startswith(".") or not path.is_dir():
        return False  # hidden (staging directories, editors' files) or not a directory: not a model
    if model_directory(root, path.name) is not None:
        return True
    if path.name not in _skipped and len(_skipped) < 1024:
        _skipped.add(path.name)
        log.warning(
            "%s: skipped: not a model name, or a symlink leading outside the repository "
            "(see docs/model-repository.md)",
            path,
        )
    return False


def scan_model(model_dir: Path) -> ModelSource | None:
    """One model directory's versions; None when the directory is gone."""
    if not model_dir.is_dir():
        return None
    try:
        return _source(model_dir)
    except FileNotFoundError:  # removed while it was read
        return None


def _source(model_dir: Path) -> ModelSource:
    """A model directory's positive integer versions, ascending, each with its model file."""
    if is_bare(model_dir):
        return ModelSource(model_dir.name, model_dir, {1: _model_file(model_dir)})
    versions = {
        int(v.name): _model_file(v)
        for v in model_dir.iterdir()
        if v.is_dir() and v.name.isdigit() and int(v.name) > 0
    }
    return ModelSource(model_dir.name, model_dir, dict(sorted(versions.items())))


def _model_file(version_dir: Path) -> Path:
    """The first platform's model file that is there (model.onnx when there is none)."""
    return next((p for p in (version_dir / n for n in MODEL_FILES) if p.is_file()), version_dir / MODEL_FILE)
