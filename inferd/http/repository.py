"""REST routes of the model repository extension and inferd's rollout endpoints.

``/v2/repository/index``, ``/v2/repository/models/{m}/load|unload`` (Triton's shapes), and
``/v2/repository/models/{m}/rollout|promote|rollback|lifecycle`` (inferd's own, see docs/lifecycle.md).
"""

from __future__ import annotations

from typing import Any

import orjson

from inferd.dataplane.control import ControlPlane
from inferd.errors import InvalidRequest, NotFound, Unsupported
from inferd.names import model_name

_NO_CONTENT: dict[str, Any] = {}


def document(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("request body must be a JSON object")
    return document


def _config_override(document: dict[str, Any]) -> str | None:
    """Triton's load body: {"parameters": {"config": "<model configuration as a JSON string>"}}."""
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidRequest("'parameters' must be a JSON object")
    if any(key.startswith("file:") for key in parameters):
        raise Unsupported("loading a model from files sent in the request is not supported")
    config = parameters.get("config")
    if config is None:
        return None
    if not isinstance(config, str):
        raise InvalidRequest("'parameters.config' must be a string holding the configuration (JSON or YAML)")
    return config


async def repository_route(control: ControlPlane, rest: list[str], method: str, body: bytes) -> Any:
    """The JSON document to answer with; raises NotFound for a path that is not served here."""
    if rest == ["index"] and method == "POST":
        return await control.repository_index(ready_only=bool(document(body).get("ready", False)))
    if len(rest) != 3 or rest[0] != "models" or not rest[1]:
        raise NotFound(f"no route for {method} /v2/repository/{'/'.join(rest)}")
    name, action = model_name(rest[1]), rest[2]
    if method == "POST" and action == "load":
        await control.load_model(name, _config_override(document(body)))
        return _NO_CONTENT
    if method == "POST" and action == "unload":
        await control.unload_model(name)
        return _NO_CONTENT
    if method == "POST" and action == "rollout":
        return await control.start_rollout(name, document(body))
    if method == "GET" and action == "rollout":
        return {"rollout": control.rollout_status(name)}
    if method == "POST" and action == "promote":
        return {"default_version": await control.promote(name)}
    if method == "POST" and action == "rollback":
        return {"default_version": await control.rollback(name)}
    if method == "GET" and action == "lifecycle":
        return control.model_lifecycle(name)
    if method == "GET" and action == "drift-sample":
        return {"inputs": control.drift_sample(name)}
    raise NotFound(f"no route for {method} /v2/repository/{'/'.join(rest)}")
