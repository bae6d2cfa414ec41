"""A plain HTTP client for requests tritonclient would refuse to build (malformed ones)."""

from __future__ import annotations

import http.client
import json
from typing import Any


def request(
    address: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def post_json(address: str, path: str, document: Any) -> tuple[int, Any]:
    status, _, body = request(address, "POST", path, json.dumps(document).encode())
    return status, json.loads(body) if body else None
