"""A server with inline execution on answers exactly as one without it, over every transport."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from metricsutil import scrape, value
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

BATCHING = "max_batch_size: 16\ndynamic_batching:\n  max_queue_delay_ms: 1\n"


@pytest.fixture(scope="module")
def inline_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    root = tmp_path_factory.mktemp("inline-models")
    mf.write_model(root, "simple", lambda p: mf.add_sub(p, TensorProto.FLOAT), config=BATCHING)
    mf.write_model(root, "gather", mf.gather, config=BATCHING)
    # This one opts out in its own config.yaml: the server-wide default does not apply to it.
    mf.write_model(
        root, "worker_only", lambda p: mf.add_sub(p, TensorProto.FLOAT), config="inline_execution_max_us: 0\n"
    )
    # A bound far above these models' run time, so every lone request after the first qualifies.
    workdir = tmp_path_factory.mktemp("inline-server")
    running = start_server(root, workdir, "--inline-execution-max-us", "5000")
    yield running  # type: ignore[misc]
    assert running.stop() == 0, running.log()


def _simple(server: RunningServer, model: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = 1 + index % 3
    rng = np.random.default_rng(index)
    a = rng.standard_normal((rows, 16)).astype(np.float32)
    b = rng.standard_normal((rows, 16)).astype(np.float32)
    if index % 3 == 2:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inputs = [grpcclient.InferInput(n, [rows, 16], "FP32") for n in ("INPUT0", "INPUT1")]
        for tensor, data in zip(inputs, (a, b), strict=True):
            tensor.set_data_from_numpy(data)
        result = client.infer(model, inputs)
    else:
        http = httpclient.InferenceServerClient(server.http_url)
        inputs = [httpclient.InferInput(n, [rows, 16], "FP32") for n in ("INPUT0", "INPUT1")]  # type: ignore[misc]
        for tensor, data in zip(inputs, (a, b), strict=True):
            tensor.set_data_from_numpy(data, binary_data=index % 3 == 1)  # type: ignore[call-arg]
        result = http.infer(model, inputs)  # type: ignore[arg-type,assignment]
    return a, b, np.stack([result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")])


def _executions(server: RunningServer, model: str) -> tuple[float, float]:
    samples = scrape(server.http_url)
    labels = {"model": model, "version": "1"}
    return value(samples, "inferd_executions_total", **labels), value(
        samples, "inferd_inline_executions_total", **labels
    )


def test_lone_requests_run_inline_and_get_their_own_answers(inline_server: RunningServer) -> None:
    for index in range(30):  # JSON, binary and gRPC in turn, one to three rows
        a, b, out = _simple(inline_server, "simple", index)
        np.testing.assert_allclose(out[0], a + b, rtol=1e-6)
        np.testing.assert_allclose(out[1], a - b, rtol=1e-6)
    executions, inline = _executions(inline_server, "simple")
    assert executions == 30
    # Each of the three shapes runs on a worker until measured (twice: the first run is dropped as a
    # cold one); later lone requests run inline unless a slow run inflated the estimate, hence a margin.
    assert inline >= 10


def test_concurrent_mixed_requests_each_get_their_own_answer(inline_server: RunningServer) -> None:
    # Inline runs and worker batches interleave here; whichever ran a request, its answer is its own.
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: _simple(inline_server, "simple", i), range(96)))
    for a, b, out in results:
        np.testing.assert_allclose(out[0], a + b, rtol=1e-6)
        np.testing.assert_allclose(out[1], a - b, rtol=1e-6)


def test_a_failing_inline_execution_fails_only_its_request(inline_server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(inline_server.http_url)

    def gather(index: int) -> np.ndarray:
        tensor = httpclient.InferInput("INDEX", [1, 1], "INT64")
        tensor.set_data_from_numpy(np.array([[index]], dtype=np.int64))
        return client.infer("gather", [tensor]).as_numpy("OUTPUT0")  # type: ignore[no-any-return]

    for _ in range(3):  # the shape is measured on the worker, then qualifies for inline runs
        np.testing.assert_array_equal(gather(4), [[6.0]])
    with pytest.raises(InferenceServerException, match="failed to execute") as failure:
        gather(100)
    assert failure.value.status() == "500"
    np.testing.assert_array_equal(gather(2), [[3.0]])
    executions, inline = _executions(inline_server, "gather")
    assert executions == 5 and inline >= 1


def test_a_model_that_opts_out_never_runs_inline(inline_server: RunningServer) -> None:
    for index in range(6):
        a, b, out = _simple(inline_server, "worker_only", index)
        np.testing.assert_allclose(out[0], a + b, rtol=1e-6)
    assert _executions(inline_server, "worker_only") == (6, 0)
