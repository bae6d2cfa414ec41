"""A model with ``dynamic_batching: {target_p99_ms: N}`` served for real: correct answers over REST and
gRPC, what the controller chose in /metrics and the lifecycle document, and a request the queue cannot
serve in time shed with 503 / UNAVAILABLE and counted."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from browser import chromium
from httputil import post_json, request
from metricsutil import scrape, value
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

from inferd.scheduler.adaptive import WARM_EXECUTIONS

ADAPTIVE = "max_batch_size: 16\ndynamic_batching:\n  target_p99_ms: 50\n"
# The stalling model runs max(INPUT0) MatMuls (about 0.5 ms each on one core): executions of 100 are
# far slower than its 2 ms target, so once they are measured nothing can queue behind a running one.
STALLING = "max_batch_size: 8\ndynamic_batching:\n  target_p99_ms: 2\n"


@pytest.fixture(scope="module")
def adaptive_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    root = tmp_path_factory.mktemp("adaptive-models")
    mf.write_model(root, "adaptive", lambda p: mf.add_sub(p, TensorProto.FLOAT), config=ADAPTIVE)
    mf.write_model(root, "fixed", lambda p: mf.add_sub(p, TensorProto.FLOAT), config="max_batch_size: 16\n")
    mf.write_model(root, "stalling", mf.stalls_on_demand, config=STALLING)
    running = start_server(root, tmp_path_factory.mktemp("adaptive-server"))
    yield running  # type: ignore[misc]
    assert running.stop() == 0, running.log()


def _rest_add_sub(server: RunningServer, index: int) -> tuple[int, np.ndarray | None, np.ndarray]:
    rng = np.random.default_rng(index)
    a = rng.standard_normal((1 + index % 3, 16)).astype(np.float32)
    document = {
        "inputs": [
            {"name": name, "shape": list(a.shape), "datatype": "FP32", "data": data.ravel().tolist()}
            for name, data in (("INPUT0", a), ("INPUT1", a))
        ]
    }
    status, answer = post_json(server.http_url, "/v2/models/adaptive/infer", document)
    if status != 200:
        return status, None, a
    output = next(o for o in answer["outputs"] if o["name"] == "OUTPUT0")
    return status, np.array(output["data"], np.float32).reshape(output["shape"]), a


def _grpc_add_sub(server: RunningServer, index: int) -> tuple[int, np.ndarray | None, np.ndarray]:
    rng = np.random.default_rng(index)
    a = rng.standard_normal((1 + index % 3, 16)).astype(np.float32)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inputs = [grpcclient.InferInput(name, list(a.shape), "FP32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    try:
        result = client.infer("adaptive", inputs)
    except InferenceServerException as exc:
        return 503 if exc.status() == "StatusCode.UNAVAILABLE" else 500, None, a
    return 200, result.as_numpy("OUTPUT0"), a


def test_concurrent_requests_get_their_own_answers_and_sheds_are_counted(
    adaptive_server: RunningServer,
) -> None:
    calls = [_rest_add_sub if i % 2 else _grpc_add_sub for i in range(96)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: calls[i](adaptive_server, i), range(96)))
    refused = 0
    for status, out, a in results:
        if status == 503:  # shed: allowed only as a 503 / UNAVAILABLE, and counted
            refused += 1
            continue
        assert status == 200 and out is not None
        np.testing.assert_allclose(out, a + a, rtol=1e-6)
    samples = scrape(adaptive_server.http_url)
    labels = {"model": "adaptive", "version": "1"}
    shed = sum(
        value(samples, "inferd_requests_shed_total", reason=reason, **labels)
        for reason in ("batcher", "frontend")
    )  # the front-end's share is whatever the machine's load made the event loop lag
    assert shed == refused
    assert value(samples, "inferd_request_success_total", **labels) == 96 - refused
    assert 1 <= value(samples, "inferd_adaptive_batch_cap", **labels) <= 16
    assert ("inferd_adaptive_queue_delay_seconds", frozenset(labels.items())) in samples
    # A model without a target has the shed counter (at 0) but no controller to report on.
    fixed = frozenset({"model": "fixed", "version": "1", "reason": "batcher"}.items())
    assert ("inferd_requests_shed_total", fixed) in samples
    assert ("inferd_adaptive_batch_cap", frozenset({"model": "fixed", "version": "1"}.items())) not in samples


def test_the_lifecycle_document_shows_what_the_controller_chose(adaptive_server: RunningServer) -> None:
    status, _, body = request(adaptive_server.http_url, "GET", "/v2/repository/models/adaptive/lifecycle")
    assert status == 200, body
    chosen = json.loads(body)["versions"]["1"]["adaptive_batching"]
    assert chosen["target_p99_ms"] == 50
    assert 1 <= chosen["batch_cap"] <= 16 and chosen["queue_delay_ms"] >= 0


def test_the_status_page_shows_what_the_controller_chose(adaptive_server: RunningServer) -> None:
    data = json.loads(request(adaptive_server.http_url, "GET", "/dashboard/data")[2])
    models = {m["name"]: m for m in data["models"]}
    assert models["adaptive"]["adaptive_batching"]["target_p99_ms"] == 50
    assert "adaptive_batching" not in models["fixed"] and models["fixed"]["shed"] == 0
    with chromium() as driver:
        driver.get(f"http://{adaptive_server.http_url}/dashboard?interval_ms=300")
        deadline = time.monotonic() + 30
        # The pending cell of a model with a target explains the controller's choice on hover.
        script = (
            "const r = document.querySelector('tr[data-model=\"adaptive\"]'); return r && r.cells[7].title"
        )
        while not (title := driver.execute_script(script)):
            assert time.monotonic() < deadline, "the page never showed the adaptive model"
            time.sleep(0.1)
        assert title.startswith("adaptive batching, target p99 50 ms: batch cap ")


def _stall_input(trips: float) -> dict[str, object]:
    return {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [trips] * 4}]}


def test_a_request_that_cannot_make_the_target_is_shed_with_503_and_unavailable(
    adaptive_server: RunningServer, tmp_path: Path
) -> None:
    url = adaptive_server.http_url
    for _ in range(WARM_EXECUTIONS):  # one at a time, on an idle model: never shed
        status, answer = post_json(url, "/v2/models/stalling/infer", _stall_input(100))
        assert status == 200, answer
    # Hold the only instance for a few seconds, then ask again while it runs.
    held: list[int] = []
    holder = threading.Thread(
        target=lambda: held.append(post_json(url, "/v2/models/stalling/infer", _stall_input(4000))[0])
    )
    holder.start()
    labels = {"model": "stalling", "version": "1"}
    while value(scrape(url), "inferd_pending_requests", **labels) < 1:
        assert holder.is_alive()
    status, answer = post_json(url, "/v2/models/stalling/infer", _stall_input(1))
    assert status == 503 and "shed" in answer["error"], answer
    client = grpcclient.InferenceServerClient(adaptive_server.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("stalling", [tensor])
    assert raised.value.status() == str(grpc.StatusCode.UNAVAILABLE) and "shed" in str(raised.value)
    holder.join(60)
    assert held == [200]
    samples = scrape(url)
    assert value(samples, "inferd_requests_shed_total", reason="batcher", **labels) == 2
    assert value(samples, "inferd_request_failure_total", kind="unavailable", **labels) == 2
