"""A model's class labels (``labels.txt``, one per line), for the classification extension."""

from __future__ import annotations

from pathlib import Path

from inferd.repository.paths import resolve_inside

LABELS_FILE = "labels.txt"
MAX_LABELS_BYTES = 16 * 1024 * 1024


def read_labels(model_dir: Path, version_dir: Path) -> tuple[str, ...]:
    """Blocking: the labels beside the version's file, else beside the model's config (as Triton
    looks for them); none when neither exists. A labels file that resolves outside the model's
    directory or exceeds the size bound is ignored (never followed, never read whole)."""
    for base in (version_dir, model_dir):
        if resolve_inside(model_dir, str((base / LABELS_FILE).relative_to(model_dir))) is None:
            continue
        path = base / LABELS_FILE
        try:
            if path.stat().st_size > MAX_LABELS_BYTES:
                continue
            return tuple(path.read_text(encoding="utf-8", errors="replace").splitlines())
        except OSError:
            continue
    return ()
