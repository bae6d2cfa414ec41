"""--lazy loads a model on its first request; --max-loaded-models unloads the least recently used."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import numpy as np
import tritonclient.http as httpclient
from httputil import request
from lifecycleutil import index, lifecycle, wait_until
from serverctl import start_server

TIMEOUT_S = 60


def _infer(client: httpclient.InferenceServerClient, model: str) -> float:
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    return float(client.infer(model, [tensor]).as_numpy("OUTPUT0")[0, 0])


def _last_inference(client: httpclient.InferenceServerClient, model: str) -> int:
    return int(client.get_inference_statistics(model)["model_stats"][0]["last_inference"])


def _loaded(address: str) -> set[str]:
    return {row["name"] for row in index(address) if row["state"] == "READY"}


def test_lazy_loading_and_least_recently_used_unloading(tmp_path: Path) -> None:
    root = tmp_path / "models"
    for value, name in enumerate(("a", "b", "c"), start=1):
        mf.write_model(root, name, lambda p, v=float(value): mf.add_constant(p, v))
    server = start_server(root, tmp_path, "--lazy", "--max-loaded-models", "2")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_server_ready() and client.is_model_ready("a")
        assert _loaded(server.http_url) == set()
        assert {"name": "a", "state": "UNAVAILABLE", "reason": "not loaded (loads on its first request)"} in (
            index(server.http_url)
        )

        assert _infer(client, "a") == 1.0
        cold_start = lifecycle(server.http_url, "a")["versions"]["1"]["cold_start"]
        assert cold_start["load_ms"] > 0 and cold_start["rss_delta_mb"] is not None
        assert _infer(client, "b") == 2.0
        # Use a again until its last use is strictly later than b's (timestamps are in ms).
        wait_until(
            lambda: (
                _infer(client, "a") == 1.0 and _last_inference(client, "a") > _last_inference(client, "b")
            ),
            TIMEOUT_S,
            "a to be used after b",
        )
        assert _infer(client, "c") == 3.0
        assert _loaded(server.http_url) == {"a", "c"}
        evicted = [row for row in index(server.http_url) if row["name"] == "b"]
        assert evicted == [
            {
                "name": "b",
                "version": "1",
                "state": "UNAVAILABLE",
                "reason": "unloaded: least recently used (--max-loaded-models 2)",
            }
        ]
        # b comes back on its next request, and the least recently used of a and c makes room.
        assert _infer(client, "b") == 2.0
        assert len(_loaded(server.http_url)) == 2 and "b" in _loaded(server.http_url)
        assert "loaded on its first request" in server.log()
    finally:
        assert server.stop() == 0, server.log()


def test_metadata_of_a_lazy_model_starts_its_load(tmp_path: Path) -> None:
    mf.write_model(tmp_path / "models", "a", lambda p: mf.add_constant(p, 1.0))
    server = start_server(tmp_path / "models", tmp_path, "--lazy")
    try:
        status, _, body = request(server.http_url, "GET", "/v2/models/a")
        assert status in (200, 503), body
        wait_until(
            lambda: request(server.http_url, "GET", "/v2/models/a")[0] == 200, TIMEOUT_S, "the model to load"
        )
        assert _loaded(server.http_url) == {"a"}
    finally:
        assert server.stop() == 0, server.log()
