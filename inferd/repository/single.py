"""Single-model mode (``inferd serve --model-name NAME``), what KServe runs: one directory, one model.

KServe mounts a model's storage read-only at /mnt/models and names the model. That directory holds
either the model's version directories (``1/model.onnx``, ``config.yaml``) or the model's files
themselves (``model.onnx``, ``config.yaml``), which then serve as version 1; or, for an ensemble and
its steps, a whole repository with a ``NAME/`` directory in it, served as it is.

For the first two, the repository the server scans is a private view: a new temporary directory whose
one entry, ``NAME``, is a symlink to the model directory. The repository's confinement (paths.py)
refuses symlinks leading out of a repository; it lets through exactly the one this module made.
Nothing is ever written under the model directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from inferd.names import is_model_name

# Real path of each view this process made -> the name of its one model.
_views: dict[str, str] = {}


def serving_root(model_repository: Path, model_name: str | None) -> Path:
    """The repository to scan: ``model_repository`` itself, or the view serving it as ``model_name``.
    ValueError names what is wrong with the two."""
    if model_name is None:
        return model_repository
    if not is_model_name(model_name):
        raise ValueError(f"--model-name {model_name!r} is not a model name (see docs/model-repository.md)")
    if not model_repository.is_dir():
        raise ValueError(f"model directory {model_repository} is not a directory")
    if not model_name.isdigit() and (model_repository / model_name).is_dir():
        return model_repository  # a whole repository (an ensemble and its steps)
    view = Path(tempfile.mkdtemp(prefix="inferd-model-"))
    (view / model_name).symlink_to(model_repository.resolve(), target_is_directory=True)
    _views[os.path.realpath(view)] = model_name
    atexit.register(shutil.rmtree, view, True)
    return view


def is_view_model(root: Path, name: str) -> bool:
    """Whether ``root`` is a view this process made and ``name`` its model."""
    return _views.get(os.path.realpath(root)) == name


def is_bare(model_dir: Path) -> bool:
    """A view's model directory without version directories: its files are version 1."""
    return is_view_model(model_dir.parent, model_dir.name) and not any(
        p.name.isdigit() and p.is_dir() for p in model_dir.iterdir()
    )
