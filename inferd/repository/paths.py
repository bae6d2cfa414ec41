"""Confinement on disk: a model's directory lies inside the repository, and a file its configuration
names lies inside the model's directory, both after following symlinks (realpath). Anything else is
treated as absent, with one answer whatever exists outside. Texts shown to clients name paths relative
to the repository; the server's own logs keep the absolute paths for its operator.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from inferd.names import is_model_name
from inferd.repository.single import is_view_model


def resolve_inside(base: Path, relative: str) -> Path | None:
    """``base/relative`` resolved (symlinks followed) when it lies strictly inside ``base``, else None.

    An absolute ``relative``, a ``..`` that climbs out, or a symlink leading out all give None, whether
    or not the target exists: the answer never depends on what is outside ``base``.
    """
    real_base = os.path.realpath(base)
    real = os.path.realpath(os.path.join(real_base, relative))
    if real == real_base or os.path.commonpath((real_base, real)) != real_base:
        return None
    return Path(real)


def model_directory(root: Path, name: str) -> Path | None:
    """``root/name`` when ``name`` is a model name and its directory resolves inside the repository
    (or it is the one model of a single-model view: single.py)."""
    if not is_model_name(name) or (resolve_inside(root, name) is None and not is_view_model(root, name)):
        return None
    return root / name  # unresolved: the path the operator knows, in logs and fingerprints


def relative_to_repository(text: str, root: Path) -> str:
    """``text`` with every absolute spelling of the repository's path removed, so ``/srv/models/mlp/
    config.yaml`` reads ``mlp/config.yaml`` and the repository itself reads ``.``."""
    for prefix in _spellings(root):
        text = re.sub(re.escape(prefix) + r"(?:/|(?![\w.\-]))", _relative, text)
    return text


def _relative(match: re.Match[str]) -> str:
    return "" if match.group(0).endswith("/") else "."


def _spellings(root: Path) -> list[str]:
    spellings = {str(root.absolute()), os.path.realpath(root), os.path.abspath(root)}
    # Longest first, so a spelling that contains another is replaced whole.
    return sorted((s.rstrip("/") for s in spellings if s.rstrip("/")), key=len, reverse=True)
