"""SIGTERM under sustained load: every request the server accepted completes correctly, then exit 0."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import modelfactory as mf
import numpy as np
import tritonclient.grpc as grpcclient
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

SLOW_MS = 150
WORKERS = 6


@dataclass
class Outcome:
    sent_at: float  # time.monotonic() once the whole request was written to the socket
    status: int | None  # None: the connection failed before any response arrived
    correct: bool
    answered_at: float = 0.0


def _worker(server: RunningServer, index: int, outcomes: list[Outcome], stop: threading.Event) -> None:
    """Requests one after another on a persistent connection until the server goes away."""
    data = np.full((1, 4), float(index), np.float32)
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": data.ravel().tolist()}]}
    ).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    while not stop.is_set():
        try:
            connection.request("POST", "/v2/models/slow/infer", body, {"Content-Type": "application/json"})
        except OSError:
            return  # refused or reset while sending: never accepted
        sent_at = time.monotonic()
        try:
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            outcomes.append(Outcome(sent_at, None, False))
            return
        correct = False
        if response.status == 200:
            correct = json.loads(payload)["outputs"][0]["data"] == (data + 1).ravel().tolist()
        outcomes.append(Outcome(sent_at, response.status, correct, time.monotonic()))
        if response.getheader("connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)


def _grpc_worker(server: RunningServer, index: int, outcomes: list[str], stop: threading.Event) -> None:
    """gRPC calls until the server goes away; each outcome is "ok", "wrong" or the status code."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    data = np.full((1, 4), float(index), np.float32)
    while not stop.is_set():
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(data)
        try:
            output = client.infer("slow", [tensor], client_timeout=60).as_numpy("OUTPUT0")
        except InferenceServerException as exc:
            outcomes.append(str(exc.status()))
            return
        outcomes.append("ok" if np.array_equal(output, data + 1) else "wrong")


def test_sigterm_under_load_finishes_every_accepted_request(tmp_path: Path) -> None:
    root = tmp_path / "models"
    mf.write_model(root, "slow", lambda p: mf.slow(p, SLOW_MS), config="max_batch_size: 2\n")
    server = start_server(root, tmp_path, "--drain-timeout", "60")
    outcomes: list[list[Outcome]] = [[] for _ in range(WORKERS)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=_worker, args=(server, i, outcomes[i], stop), daemon=True)
        for i in range(WORKERS)
    ]
    grpc_outcomes: list[list[str]] = [[] for _ in range(2)]
    threads += [
        threading.Thread(target=_grpc_worker, args=(server, 100 + i, grpc_outcomes[i], stop), daemon=True)
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while not all(outcomes) or not all(grpc_outcomes):  # every client served once: load is sustained
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        assert server.process.wait(timeout=60) == 0, server.log()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        if server.process.poll() is None:
            server.process.kill()

    everything = [o for per_worker in outcomes for o in per_worker]
    accepted_before = [o for o in everything if o.sent_at < signalled_at]
    # Sent before SIGTERM on a connection the server had already accepted: each must complete correctly.
    assert accepted_before and all(o.status == 200 and o.correct for o in accepted_before), everything
    # The drain had real work: some of those were still being computed when the signal arrived.
    assert any(o.answered_at > signalled_at for o in accepted_before), everything
    # Later requests either completed correctly or were turned away; none got a wrong answer or a 500.
    for outcome in everything:
        assert outcome.status in (None, 200, 503), outcome
        assert outcome.status != 200 or outcome.correct
    # gRPC calls the server had taken complete; the others are refused as UNAVAILABLE, never cut off
    # (CANCELLED) or answered wrongly.
    for per_worker in grpc_outcomes:
        assert per_worker and set(per_worker) <= {"ok", "StatusCode.UNAVAILABLE"}, grpc_outcomes
    # The listener is gone: new connections are refused.
    try:
        http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5).request(
            "GET", "/v2/health/ready"
        )
    except OSError:
        pass
    else:
        raise AssertionError("the server still accepts connections after it exited")
    assert "stopped" in server.log()
