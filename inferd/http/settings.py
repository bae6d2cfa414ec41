"""REST routes of Triton's logging and trace extensions: ``/v2/logging`` and
``/v2[/models/{m}]/trace/setting`` (GET reads, POST updates and answers the settings now)."""

from __future__ import annotations

from typing import Any

from inferd.dataplane.dataplane import DataPlane
from inferd.errors import NotFound
from inferd.http.repository import document
from inferd.log_control import log_settings, update_log_settings


def logging_route(method: str, body: bytes) -> Any:
    if method == "GET":
        return log_settings()
    if method == "POST":
        return update_log_settings(document(body))
    raise NotFound(f"no route for {method} /v2/logging")


def trace_route(dp: DataPlane, model: str | None, method: str, body: bytes) -> Any:
    if model is not None:
        dp.control.model_metadata(model)  # an unknown model: 404, as for its other routes
    if method == "GET":
        return dp.trace_settings.settings(model)
    if method == "POST":
        return dp.trace_settings.update(document(body), model)
    raise NotFound(f"no route for {method} trace/setting")
