"""What a REST request asks for (API class, model, version) and who presents which key.

Used only when a Gate is configured; it mirrors the routes in app.py.
"""

from __future__ import annotations

import functools
from typing import Any

from inferd.errors import InvalidRequest
from inferd.security.apis import Api
from inferd.security.auth import bearer_or_api_key
from inferd.security.gate import Access

_UNKNOWN = Access(None)
# Shared memory registrations, log and trace settings: the admin (repository) scope, as model control.
_ADMIN = frozenset({"systemsharedmemory", "cudasharedmemory", "logging", "trace"})
_REPEATED = "the {} header must be sent once"


def split_model_path(parts: list[str]) -> tuple[str, str | None, list[str]]:
    """``[model, "versions", v, *action]`` or ``[model, *action]`` -> (model, version, action).

    The router (app.py) and the classifier below share it, so both read a path the same way.
    """
    name, action = parts[0], parts[1:]
    if len(action) >= 2 and action[0] == "versions":
        return name, action[1], action[2:]
    return name, None, action


# Clients repeat the same few paths, so the answer is memoised (Access is immutable); the bound
# keeps made-up paths from growing it.
@functools.lru_cache(maxsize=4096)
def classify(method: str, path: str) -> Access:
    parts = path.strip("/").split("/")
    # Prometheus exposition, the status page (its HTML, assets and data) and, with --workers, the
    # per-worker view beside the V2 API.
    if parts[0] in ("metrics", "dashboard", "workers", ""):
        return Access(Api.METRICS)
    if parts[0] == "v1":  # OpenAI's routes name the model in the body: checked there (openai.py)
        if parts[1:2] == ["models"]:
            return Access(Api.METADATA)
        return Access(Api.INFERENCE) if parts[1:] else _UNKNOWN
    if not parts or parts[0] != "v2":
        return _UNKNOWN
    rest = parts[1:]
    if not rest:
        return Access(Api.METADATA)
    head = rest[0]
    if head == "health":
        return Access(Api.HEALTH)
    if head in _ADMIN:
        return Access(Api.REPOSITORY)
    if head == "repository":  # index, or models/{m}/load|unload (scoped to the model, as over gRPC)
        if len(rest) >= 3 and rest[1] == "models" and rest[2]:
            return Access(Api.REPOSITORY, rest[2])
        return Access(Api.REPOSITORY)
    if head != "models" or len(rest) < 2 or not rest[1]:
        return _UNKNOWN
    if rest[1:] == ["stats"]:
        return Access(Api.METRICS)
    name, version, action = split_model_path(rest[1:])
    if action in (["infer"], ["generate"], ["generate_stream"]):
        return Access(Api.INFERENCE, name, version)
    if action == ["ready"]:
        return Access(Api.HEALTH, name, version)
    if action == ["stats"]:
        return Access(Api.METRICS, name, version)
    if not action or action == ["config"]:
        return Access(Api.METADATA, name, version)
    if action == ["trace", "setting"]:
        return Access(Api.REPOSITORY, name, version)
    return Access(None, name, version)


def credential(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The presented key; two Authorization (or X-API-Key) headers are refused, not one picked."""
    authorization = api_key = None
    for key, value in headers:
        if key == b"authorization":
            if authorization is not None:
                raise InvalidRequest(_REPEATED.format("Authorization"))
            authorization = value.decode("latin-1")
        elif key == b"x-api-key":
            if api_key is not None:
                raise InvalidRequest(_REPEATED.format("X-API-Key"))
            api_key = value.decode("latin-1")
    return bearer_or_api_key(authorization, api_key)


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""
