"""``instance_kind: process`` served for real: each instance a worker process, tensors through shared
memory. Answers over HTTP and gRPC (FP32 + BYTES), batching, user exceptions, crashes (os._exit and
SIGKILL) failing only their batch with the worker restarted and counted, the execution timeout
killing a stuck worker, no worker left after an unload or SIGTERM, and both workers serving a
GIL-bound model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import modelfactory
import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcstream import stream_responses
from httputil import post_json, request
from lifecycleutil import wait_until
from metricsutil import scrape, value
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 60

# x FP32 [4] doubled, text BYTES upper-cased, and the pid of the process that ran the batch. The first
# text of a batch can ask for a crash, an exception or a hang.
WORKER = """
import os
import queue
import signal
import time
import numpy as np
from inferd import Model, Tensor

class Worker(Model):
    inputs = [Tensor("x", "FP32", [-1, 4]), Tensor("text", "BYTES", [-1])]
    outputs = [Tensor("y", "FP32", [-1, 4]), Tensor("upper", "BYTES", [-1]), Tensor("pid", "INT64", [-1])]
    max_batch_size = 16

    def load(self, path):
        self.loaded_from = path

    def predict(self, inputs):
        first = inputs["text"][0]
        if first == b"exit":
            os._exit(3)
        if first == b"kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if first == b"boom":
            raise ValueError("boom in the worker")
        if first == b"hang":
            time.sleep(60)
        time.sleep(0.02)  # long enough for concurrent requests to queue and be merged
        rows = len(inputs["text"])
        return {
            "y": inputs["x"] * 2,
            "upper": np.array([t.decode().upper().encode() for t in inputs["text"]], dtype=object),
            "pid": np.full(rows, os.getpid(), dtype=np.int64),
        }
"""
WORKER_CONFIG = """
instance_kind: process
instances: 2
dynamic_batching:
  max_queue_delay_ms: 20
"""

# A GIL-bound predict (a pure-Python loop), one request per execution.
SPIN = """
import os
import queue
import numpy as np
from inferd import Model, Tensor

class Spin(Model):
    inputs = [Tensor("n", "INT64", [1])]
    outputs = [Tensor("pid", "INT64", [1])]

    def predict(self, inputs):
        total = 0
        for i in range(int(inputs["n"][0])):
            total += i
        return {"pid": np.array([os.getpid()], dtype=np.int64)}
"""
SPIN_CONFIG = "instance_kind: process\ninstances: 2\n"

# predict_stream in a worker process: each response repeats the text n times, growing past the
# shared responses region's first 1 MiB from the second response on.
REPEATER = """
import numpy as np
from inferd import Model, Tensor

class Repeater(Model):
    inputs = [Tensor("text", "BYTES", [1])]
    outputs = [Tensor("text", "BYTES", [1])]

    def predict_stream(self, inputs):
        for n in (1, 8, 16):
            yield {"text": np.array([inputs["text"][0] * n], dtype=object)}
"""
STUCK_CONFIG = "instance_kind: process\nexecution_timeout_s: 1\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("models")
    pymodels.write(root, "worker", WORKER, config=WORKER_CONFIG)
    pymodels.write(root, "spin", SPIN, config=SPIN_CONFIG)
    pymodels.write(root, "stuck", WORKER, config=STUCK_CONFIG)
    pymodels.write(root, "repeater", REPEATER, config="instance_kind: process\n")
    running = start_server(root, tmp_path_factory.mktemp("server"))
    yield running
    assert running.stop() == 0, running.log()


def _document(texts: list[str], start: float = 0.0) -> dict[str, object]:
    rows = len(texts)
    return {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [rows, 4],
                "data": [start + i for i in range(rows * 4)],
            },
            {"name": "text", "datatype": "BYTES", "shape": [rows], "data": texts},
        ]
    }


def _infer(
    server: RunningServer, texts: list[str], start: float = 0.0, model: str = "worker"
) -> tuple[int, dict[str, object]]:
    status, body = post_json(server.http_url, f"/v2/models/{model}/infer", _document(texts, start))
    assert isinstance(body, dict)
    return status, body


def _outputs(body: dict[str, object]) -> dict[str, list[object]]:
    return {o["name"]: o["data"] for o in body["outputs"]}  # type: ignore[attr-defined, index]


def _restarts(server: RunningServer, model: str = "worker") -> float:
    return value(scrape(server.http_url), "inferd_instance_restarts_total", model=model, version="1")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_answers_over_http_binary_and_json_and_grpc(server: RunningServer) -> None:
    status, body = _infer(server, ["héllo", ""], start=1.0)
    assert status == 200, body
    outputs = _outputs(body)
    assert outputs["y"] == [2.0 * (1 + i) for i in range(8)]
    assert outputs["upper"] == ["HÉLLO", ""]
    assert outputs["pid"][0] != server.process.pid  # ran in a worker process, not in the server

    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    texts = np.array([b"a", "é".encode(), b"xyz" * 1000], dtype=object)
    http = httpclient.InferenceServerClient(server.http_url)
    inputs = [httpclient.InferInput("x", [3, 4], "FP32"), httpclient.InferInput("text", [3], "BYTES")]
    inputs[0].set_data_from_numpy(data, binary_data=True)
    inputs[1].set_data_from_numpy(texts, binary_data=True)
    result = http.infer("worker", inputs)
    assert np.array_equal(result.as_numpy("y"), data * 2)
    assert result.as_numpy("upper").tolist() == [b"A", "É".encode(), b"XYZ" * 1000]

    client = grpcclient.InferenceServerClient(server.grpc_url)
    grpc_inputs = [grpcclient.InferInput("x", [3, 4], "FP32"), grpcclient.InferInput("text", [3], "BYTES")]
    grpc_inputs[0].set_data_from_numpy(data)
    grpc_inputs[1].set_data_from_numpy(texts)
    answer = client.infer("worker", grpc_inputs)
    assert np.array_equal(answer.as_numpy("y"), data * 2)
    assert answer.as_numpy("upper").tolist() == [b"A", "É".encode(), b"XYZ" * 1000]


def test_a_large_batch_grows_the_shared_regions(server: RunningServer) -> None:
    # 16 rows of 4 floats plus 16 texts of 256 KiB each: 4 MiB, past the regions' first 1 MiB.
    big = "q" * (256 * 1024)
    status, body = _infer(server, [big] * 16)
    assert status == 200
    assert _outputs(body)["upper"] == [big.upper()] * 16


def test_streamed_responses_grow_the_shared_region(server: RunningServer) -> None:
    """Each response of predict_stream is written to the region before the server is told its size
    (the old stream path read the size first: a response that grew the region failed)."""
    text = b"s" * (128 * 1024)
    tensor = grpcclient.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text], dtype=object))
    answers = stream_responses(server.grpc_url, "repeater", [tensor])
    assert [answer.as_numpy("text")[0] for answer in answers] == [text, text * 8, text * 16]


def test_config_reports_the_process_kind(server: RunningServer) -> None:
    config = httpclient.InferenceServerClient(server.http_url).get_model_config("worker")
    assert config["instance_group"] == [{"name": "worker_0", "kind": "KIND_CPU", "count": 2}]
    assert config["parameters"] == {"instance_kind": {"string_value": "process"}}
    via_grpc = grpcclient.InferenceServerClient(server.grpc_url).get_model_config("worker").config
    assert via_grpc.parameters["instance_kind"].string_value == "process"


def test_concurrent_requests_are_batched(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    before = http.get_inference_statistics("worker")["model_stats"][0]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: _infer(server, [f"r{i}"], start=i), range(32)))
    for i, (status, body) in enumerate(results):
        assert status == 200, body
        assert _outputs(body)["upper"] == [f"R{i}"]
        assert _outputs(body)["y"] == [2.0 * (i + k) for k in range(4)]
    after = http.get_inference_statistics("worker")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 32
    assert after["execution_count"] - before["execution_count"] < 32


def test_an_exception_in_predict_is_a_500_with_its_type_and_message(server: RunningServer) -> None:
    status, body = _infer(server, ["boom"])
    assert status == 500
    assert "predict raised ValueError: boom in the worker" in str(body["error"])
    assert "Traceback" not in str(body["error"])
    wait_until(lambda: "boom in the worker" in server.log(), TIMEOUT_S, "the traceback in the log")
    assert "Traceback" in server.log()
    assert _infer(server, ["fine"])[0] == 200


@pytest.mark.parametrize(("trigger", "how"), [("exit", "exited with code 3"), ("kill", "died with SIGKILL")])
def test_a_crashed_worker_fails_only_its_batch_and_is_restarted(
    server: RunningServer, trigger: str, how: str
) -> None:
    restarts = _restarts(server)
    status, body = _infer(server, [trigger])
    assert status == 500
    assert how in str(body["error"]) and "being restarted" in str(body["error"]), body
    # The next requests succeed (the batcher waits for the restarted worker), on both instances.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: _infer(server, [f"after-{i}"]), range(8)))
    assert all(status == 200 for status, _ in results), results
    assert _restarts(server) == restarts + 1
    assert httpclient.InferenceServerClient(server.http_url).is_model_ready("worker")
    assert "it is restarted" in server.log() and "restarted (worker pid" in server.log()
    # gRPC after a crash: INTERNAL with the same message.
    tensor = [grpcclient.InferInput("x", [1, 4], "FP32"), grpcclient.InferInput("text", [1], "BYTES")]
    tensor[0].set_data_from_numpy(np.zeros((1, 4), np.float32))
    tensor[1].set_data_from_numpy(np.array([trigger.encode()], dtype=object))
    with pytest.raises(InferenceServerException) as caught:
        grpcclient.InferenceServerClient(server.grpc_url).infer("worker", tensor)
    assert caught.value.status() == str(grpc.StatusCode.INTERNAL)
    assert how in caught.value.message()
    assert _infer(server, ["fine"])[0] == 200
    assert _restarts(server) == restarts + 2


def test_the_execution_timeout_kills_and_restarts_a_stuck_worker(server: RunningServer) -> None:
    assert _restarts(server, "stuck") == 0
    status, body = _infer(server, ["hang"], model="stuck")
    assert status == 504, body
    assert "execution timeout" in str(body["error"])
    wait_until(lambda: _restarts(server, "stuck") == 1, TIMEOUT_S, "the restart counted")
    wait_until(lambda: "model stuck/1: instance 0 restarted" in server.log(), TIMEOUT_S, "the restart")
    assert _infer(server, ["fine"], model="stuck")[0] == 200
    assert "was killed: its batch exceeded the execution timeout" in server.log()


def test_both_workers_serve_a_gil_bound_model(server: RunningServer) -> None:
    document = {"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [300_000]}]}

    def send(_: int) -> int:
        status, body = post_json(server.http_url, "/v2/models/spin/infer", document)
        assert status == 200, body
        return int(body["outputs"][0]["data"][0])  # type: ignore[index]

    pids: set[int] = set()
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            pids |= set(pool.map(send, range(8)))
            if len(pids) == 2:
                break
    assert len(pids) == 2 and server.process.pid not in pids


def _worker_pids(server: RunningServer, model: str) -> set[int]:
    """The pids that answered requests to ``worker``-shaped model ``model`` (both instances)."""
    pids: set[int] = set()

    def send(i: int) -> int:
        status, body = post_json(server.http_url, f"/v2/models/{model}/infer", _document([f"p{i}"]))
        assert status == 200, body
        return int(_outputs(body)["pid"][0])  # type: ignore[call-overload]

    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            pids |= set(pool.map(send, range(16)))
            if len(pids) == 2:
                break
    assert len(pids) == 2
    return pids


def test_no_worker_is_left_after_an_unload_or_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "models"
    pymodels.write(root, "a", WORKER, config=WORKER_CONFIG)
    pymodels.write(root, "b", WORKER, config=WORKER_CONFIG)
    server = start_server(root, tmp_path, "--model-control", "explicit", "--load-model", "*")
    try:
        unloaded = _worker_pids(server, "a")
        kept = _worker_pids(server, "b")
        status, _, body = request(server.http_url, "POST", "/v2/repository/models/a/unload", b"{}")
        assert status == 200, body
        wait_until(lambda: all(_gone(pid) for pid in unloaded), TIMEOUT_S, "model a's workers to exit")
        assert not any(_gone(pid) for pid in kept)
    finally:
        assert server.stop() == 0, server.log()
    wait_until(lambda: all(_gone(pid) for pid in kept), 10, "model b's workers to exit after SIGTERM")


def test_process_kind_is_refused_for_onnx_models(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model_dir = root / "onnx"
    (model_dir / "1").mkdir(parents=True)
    modelfactory.identity(model_dir / "1" / "model.onnx", TensorProto.FLOAT)
    (model_dir / "config.yaml").write_text("instance_kind: process\n")
    with pytest.raises(AssertionError) as caught:
        start_server(root, tmp_path)
    assert "'instance_kind: process' is supported for Python models only" in str(caught.value)
