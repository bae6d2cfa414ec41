"""The next version directory of a model, written whole, with ``provenance.json`` beside its file."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from inferd.repository.provenance import PROVENANCE_FILE


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("inferd", "onnxruntime", "onnx", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_version(
    model_dir: Path,
    model_file: Path,
    provenance: dict[str, Any],
    announce: Callable[[int], None] | None = None,
) -> int:
    """Write ``model_file`` and its provenance as the next version; returns its number.

    The directory is built under a hidden name and renamed into place, so a polling server never
    sees half a version (docs/lifecycle.md). ``announce`` is called with the version's number just
    before the rename (optimize --rollout names it in config.yaml then).
    """
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    version = max(versions, default=0) + 1
    staging = Path(tempfile.mkdtemp(prefix=".optimize-", dir=model_dir))
    try:
        shutil.copyfile(model_file, staging / "model.onnx")
        document = {**provenance, "version": version, "model_sha256": sha256(staging / "model.onnx")}
        (staging / PROVENANCE_FILE).write_text(json.dumps(document, indent=2) + "\n")
        os.chmod(staging, 0o755)
        if announce is not None:
            announce(version)
        staging.rename(model_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version
