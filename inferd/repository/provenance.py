"""A version's ``provenance.json`` (written by ``inferd optimize``): read for the model configuration,
the repository index and the lifecycle document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"
# A provenance file bigger than this is not read (the version then shows none).
MAX_PROVENANCE_BYTES = 1 << 20


def read_provenance(version_dir: Path) -> dict[str, Any] | None:
    """A version's provenance document; None when it has none or it cannot be read."""
    path = version_dir / PROVENANCE_FILE
    try:
        if path.stat().st_size > MAX_PROVENANCE_BYTES:
            return None
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def summary(document: dict[str, Any]) -> dict[str, str]:
    """The few figures the model configuration and the repository index show, as strings."""
    raw_gate = document.get("gate")
    gate: dict[str, Any] = raw_gate if isinstance(raw_gate, dict) else {}
    fields = {
        "optimized_from_version": document.get("source_version"),
        "optimized_method": document.get("method"),
        "optimized_candidate": document.get("candidate"),
        "optimized_min_mean_cosine": gate.get("min_mean_cosine"),
        "optimized_min_top1_agreement": gate.get("min_top1_agreement"),
        "optimized_speedup": document.get("speedup"),
        "optimized_at": document.get("created"),
    }
    return {key: str(value)[:200] for key, value in fields.items() if value is not None}


def index_note(summary: dict[str, str]) -> str:
    """The repository index's words for an optimized version."""
    if "optimized_from_version" not in summary:
        return ""
    method = summary.get("optimized_candidate", "?")
    return f"optimized from version {summary['optimized_from_version']} ({method})"
