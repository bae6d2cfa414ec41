"""REST routes of Triton's shared memory extensions.

``/v2/systemsharedmemory[/region/{name}]/status|register|unregister`` (system shared memory) and
the same under ``/v2/cudasharedmemory``, where inferd answers that CUDA regions are not supported
(clients probe it) and lists none.
"""

from __future__ import annotations

from typing import Any

from inferd.errors import InvalidRequest, NotFound, Unsupported
from inferd.http.repository import document
from inferd.sharedmem import NO_CUDA, RegionRegistry

_NO_CONTENT: dict[str, Any] = {}


def _split(rest: list[str], method: str, path: str) -> tuple[str | None, str]:
    """``[action]`` or ``["region", name, action]`` -> (name, action)."""
    if len(rest) == 1:
        return None, rest[0]
    if len(rest) == 3 and rest[0] == "region" and rest[1]:
        return rest[1], rest[2]
    raise NotFound(f"no route for {method} {path}")


def system_route(
    regions: RegionRegistry, rest: list[str], method: str, path: str, body: bytes, caller: str | None
) -> Any:
    """The JSON document to answer with (``caller``: the registering API key id)."""
    name, action = _split(rest, method, path)
    if action == "status" and method == "GET":
        return regions.status(name)
    if action == "unregister" and method == "POST":
        regions.unregister(name)
        return _NO_CONTENT
    if action == "register" and method == "POST" and name is not None:
        doc = document(body)
        key = doc.get("key")
        if not isinstance(key, str):
            raise InvalidRequest("the register body needs a 'key' string")
        regions.register(name, key, doc.get("offset", 0), doc.get("byte_size"), caller)
        return _NO_CONTENT
    raise NotFound(f"no route for {method} {path}")


def cuda_route(rest: list[str], method: str, path: str) -> Any:
    name, action = _split(rest, method, path)
    if action == "status" and method == "GET":
        if name is not None:
            raise NotFound(f"Unable to find cuda shared memory region: '{name}'")
        return []
    if action == "unregister" and method == "POST":
        return _NO_CONTENT  # nothing is ever registered
    if action == "register" and method == "POST":
        raise Unsupported(NO_CUDA)
    raise NotFound(f"no route for {method} {path}")
