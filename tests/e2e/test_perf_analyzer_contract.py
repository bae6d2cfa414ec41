"""Replays the calls perf_analyzer makes, in its order, and checks each answer meets its contract.

perf_analyzer's wheel needs a newer glibc than CI has, so its sequence is reproduced here: model
metadata, model config (it fails without one), server metadata (needs ``extensions``), statistics before
and after each measurement window, binary inputs with every output requested in binary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer

STAT_FIELDS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)


def _check_stats(stats: dict[str, Any]) -> dict[str, Any]:
    model = next(s for s in stats["model_stats"] if s["name"] == "simple")
    assert isinstance(model["version"], str) and model["version"].isdigit()
    for field in STAT_FIELDS:
        assert {"count", "ns"} <= set(model["inference_stats"][field]), field
    assert "inference_count" in model and "execution_count" in model
    return model


def _window(client: httpclient.InferenceServerClient, requests: int) -> None:
    for i in range(requests):
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = httpclient.InferInput(name, [1, 16], "INT32")
            tensor.set_data_from_numpy(np.full((1, 16), i, np.int32), binary_data=True)
            inputs.append(tensor)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("OUTPUT0", "OUTPUT1")]
        result = client.infer("simple", inputs, outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2 * i))


def test_http_sequence(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    metadata = client.get_model_metadata("simple")
    config = client.get_model_config("simple")
    assert config["max_batch_size"] > 0
    assert all(t["shape"][0] == -1 for t in metadata["inputs"] + metadata["outputs"])
    assert [t["name"] for t in config["input"]] == [t["name"] for t in metadata["inputs"]]
    assert "extensions" in client.get_server_metadata()
    queue_counts = []
    for _ in range(2):
        before = _check_stats(client.get_inference_statistics("simple"))
        _window(client, 5)
        after = _check_stats(client.get_inference_statistics("simple"))
        assert (
            after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 5
        )
        queue_counts.append(after["inference_stats"]["queue"]["count"])
    assert queue_counts[1] > queue_counts[0]


def test_grpc_sequence(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    metadata = client.get_model_metadata("simple", as_json=True)
    config = client.get_model_config("simple", as_json=True)["config"]
    assert int(config["max_batch_size"]) > 0
    assert all(int(t["shape"][0]) == -1 for t in metadata["inputs"] + metadata["outputs"])
    assert client.get_server_metadata(as_json=True)["extensions"]
    before = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    for i in range(4):
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = grpcclient.InferInput(name, [1, 16], "INT32")
            tensor.set_data_from_numpy(np.full((1, 16), i, np.int32))
            inputs.append(tensor)
        client.infer("simple", inputs, outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
    after = client.get_inference_statistics("simple", as_json=True)["model_stats"][0]
    assert after["version"].isdigit()
    grown = int(after["inference_stats"]["queue"]["count"]) - int(
        before["inference_stats"]["queue"].get("count", 0)
    )
    assert grown == 4
