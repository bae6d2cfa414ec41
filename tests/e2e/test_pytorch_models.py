"""PyTorch models served for real: a TorchScript MLP and a two-input torch.export program over
tritonclient HTTP and gRPC (outputs equal to torch's own), batching, the reported platform, errors in
forward, and request ids beside error ids in the log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import post_json
from lifecycleutil import wait_until
from serverctl import RunningServer, start_server

torch = pytest.importorskip("torch")  # the pytorch extra; scripts/setup --test installs it
import torchmodels as tm  # noqa: E402  (imports torch)

BATCHING = "dynamic_batching:\n  max_queue_delay_ms: 20\n"
FUSSY_CONFIG = """
platform: pytorch
max_batch_size: 8
inputs:
  - {name: x, datatype: FP32, dims: [4]}
outputs:
  - {name: y, datatype: FP32, dims: [4]}
"""
FAILS_ON_13 = """
from inferd import Model, Tensor

class Unlucky(Model):
    inputs = [Tensor("x", "FP32", [-1, 4])]
    outputs = [Tensor("y", "FP32", [-1, 4])]
    max_batch_size = 8

    def predict(self, inputs):
        if (inputs["x"] == 13).any():
            raise ValueError("unlucky 13")
        return {"y": inputs["x"]}
"""


@dataclass
class Served:
    server: RunningServer
    mlp: torch.nn.Module


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("models")
    mlp = tm.save_script(tm.MLP(), root / "mlp" / "1" / "model.pt")
    tm.write_config(root / "mlp", tm.MLP_CONFIG + BATCHING)
    # No config.yaml: the program's own signature, batched dynamically as an inferred model is.
    tm.save_exported(tm.TwoInputs(), (torch.ones(3, 4), torch.ones(3, 4)), root / "pair" / "1" / "model.pt2")
    tm.save_script(tm.Fussy(), root / "fussy" / "1" / "model.pt")
    tm.write_config(root / "fussy", FUSSY_CONFIG)
    pymodels.write(root, "unlucky", FAILS_ON_13)
    server = start_server(root, tmp_path_factory.mktemp("server"))
    yield Served(server, mlp)
    assert server.stop() == 0, server.log()


def _expected_mlp(served: Served, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        result: np.ndarray = served.mlp(torch.from_numpy(x)).numpy()
    return result


def test_torchscript_over_http_and_grpc_answers_as_torch(served: Served) -> None:
    x = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    expected = _expected_mlp(served, x)
    http = httpclient.InferenceServerClient(served.server.http_url)
    tensor = httpclient.InferInput("INPUT__0", [6, 4], "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    via_http = http.infer("mlp", [tensor]).as_numpy("OUTPUT__0")
    grpc = grpcclient.InferenceServerClient(served.server.grpc_url)
    gtensor = grpcclient.InferInput("INPUT__0", [6, 4], "FP32")
    gtensor.set_data_from_numpy(x)
    via_grpc = grpc.infer("mlp", [gtensor]).as_numpy("OUTPUT__0")
    for answer in (via_http, via_grpc):
        assert answer.dtype == np.float32 and answer.shape == (6, 3)
        np.testing.assert_allclose(answer, expected, atol=1e-6, rtol=0)


def test_an_exported_program_over_http_and_grpc_answers_as_torch(served: Served) -> None:
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    with torch.no_grad():
        total, dot = (t.numpy() for t in tm.TwoInputs()(torch.from_numpy(a), torch.from_numpy(b)))
    http = httpclient.InferenceServerClient(served.server.http_url)
    inputs = [httpclient.InferInput(n, [3, 4], "FP32") for n in ("a", "b")]
    for tensor, data in zip(inputs, (a, b), strict=True):
        tensor.set_data_from_numpy(data, binary_data=False)  # JSON this time
    via_http = http.infer("pair", inputs)
    grpc = grpcclient.InferenceServerClient(served.server.grpc_url)
    ginputs = [grpcclient.InferInput(n, [3, 4], "FP32") for n in ("a", "b")]
    for tensor, data in zip(ginputs, (a, b), strict=True):
        tensor.set_data_from_numpy(data)
    via_grpc = grpc.infer("pair", ginputs)
    for result in (via_http, via_grpc):
        np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), total, atol=1e-6, rtol=0)
        np.testing.assert_allclose(result.as_numpy("OUTPUT__1"), dot, atol=1e-6, rtol=0)


def test_metadata_and_config_report_the_pytorch_platform(served: Served) -> None:
    http = httpclient.InferenceServerClient(served.server.http_url)
    metadata = http.get_model_metadata("pair")
    assert metadata["platform"] == "pytorch_libtorch"
    assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("a", [-1, 4]), ("b", [-1, 4])]
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [
        ("OUTPUT__0", [-1, 4]),
        ("OUTPUT__1", [-1, 1]),
    ]
    config = http.get_model_config("mlp")
    assert (config["platform"], config["backend"], config["max_batch_size"]) == (
        "pytorch_libtorch",
        "pytorch",
        32,
    )
    via_grpc = grpcclient.InferenceServerClient(served.server.grpc_url).get_model_config("pair").config
    assert (via_grpc.backend, via_grpc.max_batch_size) == ("pytorch", 64)


def test_concurrent_requests_are_batched(served: Served) -> None:
    http = httpclient.InferenceServerClient(served.server.http_url)
    before = http.get_inference_statistics("mlp")["model_stats"][0]
    rows = [np.full((1, 4), i / 10, dtype=np.float32) for i in range(32)]

    def send(x: np.ndarray) -> np.ndarray:
        client = httpclient.InferenceServerClient(served.server.http_url)
        tensor = httpclient.InferInput("INPUT__0", [1, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        answer: np.ndarray = client.infer("mlp", [tensor]).as_numpy("OUTPUT__0")
        return answer

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, rows))
    for answer, x in zip(answers, rows, strict=True):
        np.testing.assert_allclose(answer, _expected_mlp(served, x), atol=1e-6, rtol=0)
    after = http.get_inference_statistics("mlp")["model_stats"][0]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 32
    assert executions < inferences


def _infer(served: Served, model: str, value: float, request_id: str) -> tuple[int, dict[str, object]]:
    document = {
        "id": request_id,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [value] * 4}],
    }
    status, body = post_json(served.server.http_url, f"/v2/models/{model}/infer", document)
    assert isinstance(body, dict)
    return status, body


def test_an_exception_in_forward_is_a_500_without_the_torchscript_traceback(served: Served) -> None:
    status, body = _infer(served, "fussy", -1.0, "torch-req-1")
    assert status == 500
    error = str(body["error"])
    assert error.startswith("model fussy/1: forward raised ") and "negative input" in error
    assert "Traceback" not in error and "code/__torch__" not in error
    assert _infer(served, "fussy", 1.0, "torch-req-2")[0] == 200  # still serving


@pytest.mark.parametrize(("model", "value"), [("unlucky", 13.0), ("fussy", -1.0)])
def test_the_log_ties_a_failed_requests_id_to_its_error_id(served: Served, model: str, value: float) -> None:
    request_id = f"trace-me-{model}"
    status, body = _infer(served, model, value, request_id)
    assert status == 500
    found = re.search(r"\(error id ([0-9a-f]{12})\)", str(body["error"]))
    assert found, body
    error_id = found.group(1)
    line = f"model {model}: request id {request_id} failed: error id {error_id}"
    wait_until(lambda: line in served.server.log(), 30, "the request id beside the error id in the log")
    # ...and the traceback is logged under the same error id.
    log = served.server.log()
    assert f"(error id {error_id})" in log and "Traceback" in log
