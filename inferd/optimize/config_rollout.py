"""A canary started through ``config.yaml``: how ``inferd optimize --rollout`` reaches a polling server.

A server under ``--model-control poll`` picks new versions up on its own; with ``version_policy:
{latest: 1}`` a new version found before the rollout call would become the default at once. Naming
the version in ``config.yaml``'s ``rollout:`` section *before* the version directory appears closes
that window: a scan that sees the section alone starts nothing (its candidate is not on disk yet), and
the scan that sees the version loads it held back, as the canary (docs/lifecycle.md, "Config rollout").

The section is replaced in place and the rest of the file kept as written, comments included; the
file is swapped in with one rename, so a scan never reads half of it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "config.yaml"
# A top-level key starts at column 0 with a name and a colon; the lines after it that are indented,
# blank or comments belong to its value.
_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*:")


class ConfigRolloutError(RuntimeError):
    pass


def rollout_section(candidate: int, canary_percent: float) -> str:
    return f"rollout:\n  candidate: {candidate}\n  canary_percent: {canary_percent:g}\n"


def with_rollout(text: str, candidate: int, canary_percent: float) -> str:
    """``text`` (a config.yaml) with its ``rollout:`` section replaced by a canary of ``candidate``."""
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if _TOP_LEVEL_KEY.match(line):
            inside = line.split(":", 1)[0].strip() == "rollout"
        if not inside:
            kept.append(line)
    result = "".join(kept)
    if result and not result.endswith("\n"):
        result += "\n"
    result += rollout_section(candidate, canary_percent)
    _check(text, result, candidate, canary_percent)
    return result


def _check(before: str, after: str, candidate: int, canary_percent: float) -> None:
    """The edit changed the rollout and nothing else (a file in flow style or with anchors might not
    split into top-level lines as assumed: then it is refused rather than rewritten wrongly)."""
    try:
        old: Any = yaml.safe_load(before) or {}
    except yaml.YAMLError as exc:
        raise ConfigRolloutError(f"{CONFIG_FILE} is not valid YAML: {exc}") from None
    if not isinstance(old, dict):
        raise ConfigRolloutError(f"{CONFIG_FILE} is not a mapping")
    try:
        new: Any = yaml.safe_load(after) or {}
    except yaml.YAMLError:
        new = None
    old.pop("rollout", None)
    wanted = new.pop("rollout", None) if isinstance(new, dict) else None
    if old != new or wanted != {"candidate": candidate, "canary_percent": _number(canary_percent)}:
        raise ConfigRolloutError(
            f"could not add the rollout section to {CONFIG_FILE} without changing the rest; "
            f"add it by hand: {rollout_section(candidate, canary_percent)!r}"
        )


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def write_rollout(model_dir: Path, candidate: int, canary_percent: float) -> str | None:
    """Name ``candidate`` as the canary in ``model_dir/config.yaml``; returns the file's previous text
    (None when there was none) for ``restore``."""
    path = model_dir / CONFIG_FILE
    previous = path.read_text() if path.exists() else None
    _replace(path, with_rollout(previous or "", candidate, canary_percent))
    return previous


def restore(model_dir: Path, previous: str | None) -> None:
    """Undo ``write_rollout`` (the version it announced was not written after all)."""
    path = model_dir / CONFIG_FILE
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _replace(path, previous)


def _replace(path: Path, text: str) -> None:
    descriptor, staging = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
