"""Page functions for the status page: (content type, body) pairs the REST front-end serves by path."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import orjson

from inferd.dashboard.snapshot import snapshot
from inferd.repository.manager import ModelRepository

Page = Callable[[], tuple[bytes, bytes]]
_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript", ".css": b"text/css"}


def _static(name: str) -> Page:
    # Read once at start-up: the files are package data and never change while serving.
    body = resources.files("inferd.dashboard").joinpath("static", name).read_bytes()
    content_type = _TYPES[name[name.rindex(".") :]]
    return lambda: (content_type, body)


def dashboard_pages(repository: ModelRepository) -> dict[str, Page]:
    index = _static("index.html")
    return {
        "/": index,
        "/dashboard": index,
        "/dashboard/dashboard.js": _static("dashboard.js"),
        "/dashboard/dashboard.css": _static("dashboard.css"),
        "/dashboard/data": lambda: (b"application/json", orjson.dumps(snapshot(repository))),
    }
