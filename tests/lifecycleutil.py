"""Helpers for lifecycle tests: atomic version writes, the repository index, bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from httputil import post_json, request


def write_version(model_dir: Path, version: int, builder: Callable[[Path], None]) -> None:
    """Build ``model_dir/<version>/model.onnx`` aside, then rename it into place in one step, so a
    polling server never sees a half-written version directory."""
    staging = model_dir / f".staging-{version}-{time.monotonic_ns()}"
    builder(staging / "model.onnx")
    target = model_dir / str(version)
    if target.exists():
        # Replacing a version in place: swap the file itself atomically.
        (staging / "model.onnx").replace(target / "model.onnx")
        staging.rmdir()
    else:
        staging.rename(target)


def index(address: str) -> list[dict[str, Any]]:
    status, rows = post_json(address, "/v2/repository/index", {})
    assert status == 200, rows
    return list(rows)


def row(address: str, model: str, version: str) -> dict[str, Any] | None:
    return next((r for r in index(address) if r["name"] == model and r.get("version") == version), None)


def lifecycle(address: str, model: str) -> dict[str, Any]:
    import json

    status, _, body = request(address, "GET", f"/v2/repository/models/{model}/lifecycle")
    assert status == 200, body
    return dict(json.loads(body))


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
