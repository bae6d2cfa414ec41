"""A requested output's ``classification`` parameter (Triton's classification extension)."""

from __future__ import annotations

from typing import Any

from inferd.errors import InvalidRequest

MAX_CLASS_COUNT = 1 << 20  # any real top-K is far smaller; it bounds the sort's output


def class_count(parameters: dict[str, Any], name: str) -> int:
    """K for a top-K classification of output ``name``; 0 when not asked for."""
    count = parameters.get("classification")
    if count is None:
        return 0
    if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= MAX_CLASS_COUNT:
        raise InvalidRequest(
            f"output '{name}': classification must be an integer from 1 to {MAX_CLASS_COUNT}"
        )
    if "shared_memory_region" in parameters:
        raise InvalidRequest(f"output '{name}': a classification cannot be written to shared memory")
    return count
