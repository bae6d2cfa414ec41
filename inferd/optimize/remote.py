"""The two calls optimize makes to a running server: fetch the drift monitor's live sample, start a canary."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from inferd.optimize.samples import SampleError, Samples

_TIMEOUT_S = 600.0  # starting a rollout loads and warms the candidate up first


class ServerError(RuntimeError):
    pass


def call(
    url: str, api_key: str | None, method: str, path: str, document: dict[str, Any] | None = None
) -> Any:
    body = json.dumps(document).encode() if document is not None else None
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    request = urllib.request.Request(url.rstrip("/") + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise ServerError(f"{method} {path}: HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    return json.loads(raw) if raw.strip() else None


def traffic_samples(url: str, api_key: str | None, model: str, shapes: dict[str, tuple[int, ...]]) -> Samples:
    """The rows the server's drift monitor keeps of live requests, reshaped to the inputs' shapes
    (``shapes``: each input's dimensions after the batch dimension)."""
    try:
        document = call(url, api_key, "GET", f"/v2/repository/models/{model}/drift-sample")
    except ServerError as exc:
        raise SampleError(f"no traffic sample: {exc}") from None
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, dict) or not inputs:
        raise SampleError(f"no traffic sample: the server keeps none for model '{model}'")
    arrays: dict[str, np.ndarray] = {}
    for name, matrix in inputs.items():
        values = np.asarray(matrix, dtype=np.float64)
        if values.ndim != 2 or not len(values):
            raise SampleError(f"no traffic sample: input '{name}' has no rows yet")
        shape = shapes.get(name)
        if shape is None or int(np.prod(shape)) != values.shape[1]:
            raise SampleError(f"no traffic sample: input '{name}' does not match the model's shape")
        arrays[name] = values.reshape((len(values), *shape))
    return Samples(arrays, f"traffic from {url}", "traffic")
