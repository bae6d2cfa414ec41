"""Custom Python models (model.py) served for real: tritonclient over HTTP and gRPC, BYTES both ways,
batching, errors in user code, load failures, and a hot swap under load."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import post_json
from lifecycleutil import index, row, wait_until
from loadgen import load_across_a_swap
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 60

IDENTITY = """
import time
from inferd import Model, Tensor

class Identity(Model):
    inputs = [Tensor("x", "FP32", [-1, 4])]
    outputs = [Tensor("y", "FP32", [-1, 4])]
    max_batch_size = 16

    def predict(self, inputs):
        time.sleep(0.02)  # long enough for concurrent requests to queue and be merged
        return {"y": inputs["x"]}
"""
BATCHING = "dynamic_batching:\n  max_queue_delay_ms: 20\n"

# Signature from config.yaml: the class declares none.
TEXT = """
import numpy as np
from inferd import Model

class Text(Model):
    def predict(self, inputs):
        texts = [t.decode("utf-8") for t in inputs["text"]]
        return {
            "upper": np.array([t.upper() for t in texts], dtype=object),
            "length": np.array([len(t) for t in texts], dtype=np.float32),
        }
"""
TEXT_CONFIG = """
platform: python
max_batch_size: 8
instances: 2
inputs:
  - {name: text, datatype: BYTES, dims: []}
outputs:
  - {name: upper, datatype: BYTES, dims: []}
  - {name: length, datatype: FP32, dims: []}
"""
FAILS_ON_13 = """
import time
import numpy as np
from inferd import Model, Tensor

class Unlucky(Model):
    inputs = [Tensor("x", "FP32", [-1, 4])]
    outputs = [Tensor("y", "FP32", [-1, 4])]
    max_batch_size = 16

    def predict(self, inputs):
        time.sleep(0.01)
        if (inputs["x"] == 13).any():
            raise ValueError("unlucky 13")
        return {"y": inputs["x"]}
"""
WRONG_KEYS = """
from inferd import Model, Tensor

class Wrong(Model):
    inputs = [Tensor("x", "FP32", [-1, 4])]
    outputs = [Tensor("y", "FP32", [-1, 4])]
    max_batch_size = 4

    def predict(self, inputs):
        return {"z": inputs["x"]}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("models")
    pymodels.write(root, "identity", IDENTITY, config=BATCHING)
    pymodels.write(root, "text", TEXT, config=TEXT_CONFIG)
    pymodels.write(root, "unlucky", FAILS_ON_13, config=BATCHING)
    pymodels.write(root, "wrong", WRONG_KEYS)
    running = start_server(root, tmp_path_factory.mktemp("server"))
    yield running
    assert running.stop() == 0, running.log()


def _http_identity(server: RunningServer, data: np.ndarray, model: str = "identity") -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("x", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data, binary_data=True)
    result = client.infer(model, [tensor]).as_numpy("y")
    assert result is not None
    return result


def test_identity_over_http_and_grpc(server: RunningServer) -> None:
    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert np.array_equal(_http_identity(server, data), data)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(data)
    assert np.array_equal(client.infer("identity", [tensor]).as_numpy("y"), data)
    status, body = post_json(
        server.http_url,
        "/v2/models/identity/infer",
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
    )
    assert status == 200 and body["outputs"][0]["data"] == [1, 2, 3, 4]


def test_metadata_and_config_report_the_python_platform(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    assert http.get_model_metadata("text")["platform"] == "python"
    config = http.get_model_config("text")
    assert (config["platform"], config["backend"], config["max_batch_size"]) == ("python", "python", 8)
    assert config["instance_group"] == [{"name": "text_0", "kind": "KIND_CPU", "count": 2}]
    via_grpc = grpcclient.InferenceServerClient(server.grpc_url).get_model_config("text").config
    assert (via_grpc.backend, via_grpc.instance_group[0].count) == ("python", 2)
    assert via_grpc.input[0].data_type == 13  # TYPE_STRING


TEXTS = np.array(["héllo".encode(), b"", b"abc"], dtype=object)


def test_bytes_in_and_out_over_json(server: RunningServer) -> None:
    document = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["héllo", "x y"]}]}
    status, body = post_json(server.http_url, "/v2/models/text/infer", document)
    assert status == 200, body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["upper"] == {"name": "upper", "datatype": "BYTES", "shape": [2], "data": ["HÉLLO", "X Y"]}
    assert outputs["length"]["data"] == [5.0, 3.0]


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_in_and_out_over_http_binary_and_json(server: RunningServer, binary: bool) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("text", [3], "BYTES")
    tensor.set_data_from_numpy(TEXTS, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("upper", "length")]
    result = client.infer("text", [tensor], outputs=outputs)
    # tritonclient hands JSON BYTES back as str, binary ones as bytes.
    upper = [e.encode() if isinstance(e, str) else e for e in result.as_numpy("upper").tolist()]
    assert upper == ["HÉLLO".encode(), b"", b"ABC"]
    assert result.as_numpy("length").tolist() == [5.0, 0.0, 3.0]


def test_bytes_in_and_out_over_grpc(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("text", [3], "BYTES")
    tensor.set_data_from_numpy(TEXTS)
    result = client.infer("text", [tensor])
    assert result.as_numpy("upper").tolist() == ["HÉLLO".encode(), b"", b"ABC"]
    assert result.as_numpy("length").dtype == np.float32


def test_concurrent_requests_are_batched(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    before = http.get_inference_statistics("identity")["model_stats"][0]
    rows = [np.full((1, 4), i, dtype=np.float32) for i in range(32)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda data: _http_identity(server, data), rows))
    assert all(np.array_equal(a, d) for a, d in zip(answers, rows, strict=True))
    after = http.get_inference_statistics("identity")["model_stats"][0]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 32
    assert executions < inferences


def test_an_exception_in_predict_fails_only_its_requests(server: RunningServer) -> None:
    def send(i: int) -> tuple[int, object]:
        data = [13.0] * 4 if i % 4 == 0 else [100.0 + i] * 4
        document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": data}]}
        return post_json(server.http_url, "/v2/models/unlucky/infer", document)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(24)))
    for i, (status, body) in enumerate(results):
        if i % 4 == 0:
            assert status == 500, body
            assert isinstance(body, dict)
            assert "predict raised ValueError: unlucky 13" in body["error"]
            assert "Traceback" not in body["error"]
        else:
            assert status == 200, body
            assert body["outputs"][0]["data"] == [100.0 + i] * 4  # type: ignore[index]
    assert "Traceback" in server.log() and "unlucky 13" in server.log()
    # Still serving, over gRPC too, where the failure is INTERNAL with the same message.
    assert np.array_equal(_http_identity(server, np.ones((1, 4), np.float32), "unlucky"), np.ones((1, 4)))
    tensor = grpcclient.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.full((1, 4), 13, dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        grpcclient.InferenceServerClient(server.grpc_url).infer("unlucky", [tensor])
    assert caught.value.status() == str(grpc.StatusCode.INTERNAL)
    assert "ValueError: unlucky 13" in caught.value.message()


def test_wrong_output_keys_are_a_clear_500(server: RunningServer) -> None:
    document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    status, body = post_json(server.http_url, "/v2/models/wrong/infer", document)
    assert status == 500
    assert "predict returned outputs ['z']; expected ['y']" in body["error"]


BROKEN_IMPORT = """
import numpy

raise RuntimeError("weights missing")
"""


def test_a_load_failure_stops_start_up_naming_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "models"
    pymodels.write(root, "broken", BROKEN_IMPORT)
    with pytest.raises(AssertionError) as caught:
        start_server(root, tmp_path)
    assert "model.py:4: RuntimeError: weights missing" in str(caught.value)


def test_a_load_failure_marks_the_model_not_ready_with_no_exit_on_error(tmp_path: Path) -> None:
    root = tmp_path / "models"
    pymodels.write(root, "broken", BROKEN_IMPORT)
    pymodels.write(root, "fine", pymodels.add_constant(1.0))
    server = start_server(root, tmp_path, "--no-exit-on-error")
    try:
        rows = {r["name"]: r for r in index(server.http_url)}
        assert rows["fine"]["state"] == "READY"
        assert rows["broken"]["state"] != "READY"
        assert "model.py:4: RuntimeError: weights missing" in rows["broken"]["reason"]
        assert not httpclient.InferenceServerClient(server.http_url).is_model_ready("broken")
    finally:
        assert server.stop() == 0, server.log()


def test_hot_swap_of_a_python_model_under_load(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model_dir = pymodels.write(root, "m", pymodels.add_constant(1.0), config=BATCHING)
    server = start_server(root, tmp_path, "--model-control", "poll", "--repository-poll-interval", "0.2")
    try:
        load = load_across_a_swap(
            server.http_url,
            server.grpc_url,
            "m",
            lambda: pymodels.write_version(model_dir, 2, pymodels.add_constant(2.0)),
            TIMEOUT_S,
        )
        assert load.errors() == []
        for record in load.snapshot():
            meanings = [meaning for _, meaning in record.answers]
            assert None not in meanings, "a wrong answer"
            first_new = meanings.index(2.0)
            assert set(meanings[:first_new]) == {1.0} and set(meanings[first_new:]) == {2.0}
            assert all(meaning == float(version) for version, meaning in record.answers)
        wait_until(
            lambda: (row(server.http_url, "m", "1") or {}).get("state") == "UNAVAILABLE",
            TIMEOUT_S,
            "version 1 to be unloaded",
        )
    finally:
        assert server.stop() == 0, server.log()
