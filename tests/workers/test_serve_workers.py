"""``inferd serve --workers 2`` as users run it: one port pair, two worker processes behind it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from httputil import post_json, request
from prometheus_client.parser import text_string_to_metric_families
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

DEADLINE_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("models")
    mf.write_model(root, "plus", lambda p: mf.add_constant(p, 1.0), config="max_batch_size: 8\n")
    mf.write_model(root, "other", lambda p: mf.add_constant(p, 2.0), config="max_batch_size: 8\n")
    running = start_server(
        root,
        tmp_path_factory.mktemp("run"),
        "--workers",
        "2",
        "--model-control",
        "explicit",
        "--load-model",
        "plus",
        "--log-format",
        "text",
    )
    yield running
    assert running.stop() == 0, running.log()


def _workers(server: RunningServer) -> dict[str, Any]:
    status, _, body = request(server.http_url, "GET", "/workers")
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    return document


def _per_worker(server: RunningServer) -> dict[int, int]:
    return {w["index"]: w["requests"] for w in _workers(server)["serving"]}


def _infer_rest(server: RunningServer, model: str = "plus") -> bool:
    """One request on a new connection (so the kernel picks a worker for it); True when correct."""
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    )
    try:
        status, _, answer = request(server.http_url, "POST", f"/v2/models/{model}/infer", body.encode())
    except (OSError, http.client.HTTPException):
        return False
    return status == 200 and json.loads(answer)["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]


def _infer_grpc(server: RunningServer, model: str = "plus") -> bool:
    """One call on a new channel (a new connection, so SO_REUSEPORT picks a worker for it)."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        data = np.array([[1, 2, 3, 4]], np.float32)
        tensor.set_data_from_numpy(data)
        output = client.infer(model, [tensor], client_timeout=30).as_numpy("OUTPUT0")
        return bool(np.array_equal(output, data + 1))
    except InferenceServerException:
        return False
    finally:
        client.close()


def _until_every_worker_serves(server: RunningServer, send: Any) -> None:
    before = _per_worker(server)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        for _ in range(8):
            assert send(server)
        now = _per_worker(server)
        if all(now[i] > before.get(i, 0) for i in now) and len(now) == 2:
            return
        assert time.monotonic() < deadline, (before, now, server.log())


def test_both_workers_answer_rest_and_grpc_on_one_port_pair(server: RunningServer) -> None:
    workers = _workers(server)
    assert workers["workers"] == 2
    pids = {w["pid"] for w in workers["serving"]}
    assert len(pids) == 2 and server.process.pid not in pids
    _until_every_worker_serves(server, _infer_rest)
    _until_every_worker_serves(server, _infer_grpc)
    status, _, _ = request(server.http_url, "GET", "/v2/health/ready")
    assert status == 200
    assert grpcclient.InferenceServerClient(server.grpc_url).is_server_ready()
    assert "[worker 0]" in server.log() and "[worker 1]" in server.log()  # each line names its worker


def test_system_shared_memory_is_refused_clearly_with_workers(server: RunningServer) -> None:
    status, body = post_json(
        server.http_url, "/v2/systemsharedmemory/region/r/register", {"key": "/k", "byte_size": 8}
    )
    assert status == 501 and "not available with --workers" in body["error"]
    _, _, metadata = request(server.http_url, "GET", "/v2")
    assert "system_shared_memory" not in json.loads(metadata)["extensions"]


def test_load_and_unload_on_one_worker_take_effect_on_all(server: RunningServer) -> None:
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    grpc.load_model("other")  # lands on one worker; answers once every worker has it
    assert all("other" in w["models"] for w in _workers(server)["serving"])
    status, _, _ = request(server.http_url, "POST", "/v2/repository/models/other/unload")
    assert status == 200
    assert all("other" not in w["models"] for w in _workers(server)["serving"])
    # A failure is the same on every worker and reaches the client with its status.
    status, _, body = request(server.http_url, "POST", "/v2/repository/models/missing/load")
    assert status in (400, 404), body
    grpc.load_model("other")
    assert all("other" in w["models"] for w in _workers(server)["serving"])


def test_statistics_and_metrics_are_sums_over_workers(server: RunningServer) -> None:
    _until_every_worker_serves(server, _infer_rest)
    per_worker = [w["success"]["plus/1"] for w in _workers(server)["serving"]]
    assert all(count > 0 for count in per_worker)
    status, _, body = request(server.http_url, "GET", "/v2/models/plus/stats")
    assert status == 200
    stats = json.loads(body)["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] == sum(per_worker)
    grpc_stats = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics(
        "plus", as_json=True
    )
    assert int(grpc_stats["model_stats"][0]["inference_stats"]["success"]["count"]) == sum(per_worker)
    status, _, text = request(server.http_url, "GET", "/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    labels = (("model", "plus"), ("version", "1"))
    assert samples[("inferd_request_success_total", labels)] == sum(per_worker)
    # A histogram merges bucket by bucket: its count is every worker's requests.
    assert samples[("inferd_request_duration_seconds_count", labels)] == sum(per_worker)
    assert samples[("inferd_model_ready", labels)] == 1.0  # one model, not one per worker
    assert samples[("inferd_workers", ())] == 2.0
    status, _, data = request(server.http_url, "GET", "/dashboard/data")
    row = next(m for m in json.loads(data)["models"] if m["name"] == "plus")
    assert row["success"] == sum(per_worker) and row["state"] == "READY"


def test_a_killed_worker_is_restarted_and_serving_continues(server: RunningServer) -> None:
    before = _workers(server)
    victim = before["serving"][0]
    failures: list[str] = []
    done = 0
    stop = threading.Event()

    def client() -> None:
        """Requests one at a time, each on a new connection, retrying nothing."""
        nonlocal done
        while not stop.is_set():
            if not _infer_rest(server):
                failures.append("rest")
            if not _infer_grpc(server):
                failures.append("grpc")
            done += 1

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        os.kill(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            now = _workers(server)
            if now["restarts"] == before["restarts"] + 1 and len(now["serving"]) == 2:
                status, _, _ = request(server.http_url, "GET", "/v2/health/ready")
                if status == 200:
                    break
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        marked = done
        while done < marked + 20:  # after the restart
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=DEADLINE_S)
    # Only the request the killed worker held at that moment may fail (one client: at most one per protocol).
    assert len(failures) <= 2, failures
    restarted = next(w for w in now["serving"] if w["index"] == victim["index"])
    assert restarted["pid"] != victim["pid"]
    # The new worker replayed the load API calls made before it started.
    assert "other" in restarted["models"]
    assert "died (killed by SIGKILL)" in server.log()
    for _ in range(10):
        assert _infer_rest(server) and _infer_grpc(server)
    _until_every_worker_serves(server, _infer_rest)


def test_sigterm_under_load_drains_every_worker_and_exits_0(tmp_path: Path) -> None:
    root = tmp_path / "models"
    mf.write_model(root, "slow", lambda p: mf.slow(p, 100), config="max_batch_size: 2\n")
    # --workers auto counts the cores of the affinity mask the server inherits (as under taskset).
    inherited = os.sched_getaffinity(0)
    cpus = set(sorted(inherited)[:2])
    os.sched_setaffinity(0, cpus)
    try:
        server = start_server(root, tmp_path, "--workers", "auto", "--drain-timeout", "60")
    finally:
        os.sched_setaffinity(0, inherited)
    assert _workers(server)["workers"] == len(cpus)
    answered: list[tuple[float, bool]] = []
    refused: list[str] = []
    stop = threading.Event()
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]}
    )

    def client() -> None:
        """Keep-alive requests until the server goes away; a request sent is answered or a failure."""
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        while not stop.is_set():
            try:
                connection.request("POST", "/v2/models/slow/infer", body.encode())
            except OSError:
                refused.append("not accepted")
                return
            sent_at = time.monotonic()
            try:
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                answered.append((sent_at, False))
                return
            ok = response.status == 200 and json.loads(payload)["outputs"][0]["data"] == [1.0] * 4
            answered.append((sent_at, ok or response.status == 503))
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)

    # The kernel picks a worker per connection: with 12 keep-alive clients, all on one worker is a
    # 1-in-2048 chance; then one-off requests on new connections reach the other worker.
    threads = [threading.Thread(target=client, daemon=True) for _ in range(12)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(answered) < 12 or min(_per_worker(server).values()) == 0:
            assert time.monotonic() < deadline, server.log()
            if len(answered) >= 12:
                request(server.http_url, "POST", "/v2/models/slow/infer", body.encode())
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        assert server.process.wait(timeout=DEADLINE_S) == 0, server.log()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=DEADLINE_S)
        if server.process.poll() is None:
            server.process.kill()
    before = [ok for sent_at, ok in answered if sent_at < signalled_at]
    assert before and all(before), answered
    assert all(ok for _, ok in answered), answered
    assert "stopped" in server.log()
