"""Overload and stuck models end to end: a disconnected REST client's request never runs, the queue
bound answers 503, a hung execution fails with 504 while the model keeps serving, SIGTERM finishes
within its bound even then, and gRPC calls during the drain get UNAVAILABLE, never CANCELLED."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import modelfactory as mf
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from httputil import post_json, request
from metricsutil import scrape, value
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

# Loop trips of the stalling model: 0.15-1 ms each on one core, depending on the machine.
BUSY_S = 1.5  # how long a busy execution keeps the model's one instance (its trips are measured)
HUNG = 20_000  # far longer than any test waits
CALLERS = 500  # concurrent gRPC calls: enough that grpc-core holds some not yet handed over


def _document(value: float) -> dict[str, object]:
    data = [value] * 4
    return {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": data}]}


def _infer(server: RunningServer, model: str, value: float) -> tuple[int, object]:
    return post_json(server.http_url, f"/v2/models/{model}/infer", _document(value))


def _stats(server: RunningServer, model: str) -> dict[str, object]:
    client = httpclient.InferenceServerClient(server.http_url)
    return client.get_inference_statistics(model)["model_stats"][0]  # type: ignore[no-any-return]


def _wait_executions(server: RunningServer, model: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while int(_stats(server, model)["execution_count"]) < count:  # type: ignore[call-overload]
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)


def _stalling(root: Path, name: str, config: str) -> None:
    mf.write_model(root, name, mf.stalls_on_demand, config="max_batch_size: 1\n" + config)


def test_disconnected_client_queue_bound_and_execution_timeout(tmp_path: Path) -> None:
    root = tmp_path / "models"
    _stalling(root, "held", "")
    _stalling(root, "unbounded", "max_queue_size: 0\n")
    _stalling(root, "hangs", "execution_timeout_s: 0.5\n")
    # Every execution on the worker thread: these models' run time depends on the input's values, not
    # its shape, and inline execution (auto by default) estimates by shape, so a short run measured
    # first would let a seconds-long one run on the event loop and hold back the requests this test
    # queues behind it (docs/model-repository.md, inline execution).
    server = start_server(root, tmp_path, "--max-queue-size", "2", "--inline-execution-max-us", "0")
    try:
        busy_trips = _trips_lasting(server, "held", BUSY_S)
        with ThreadPoolExecutor(8) as pool:
            # 1. A client that disconnects while its request waits: the request never executes.
            executed = int(_stats(server, "held")["execution_count"])  # type: ignore[call-overload]
            before = _launched(server, "held")
            busy = pool.submit(_infer, server, "held", busy_trips)
            _wait_started(server, "held", before)
            body = json.dumps(_document(1.0)).encode()
            with socket.create_connection(("127.0.0.1", server.http_port)) as raw:
                raw.sendall(
                    b"POST /v2/models/held/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                _wait_pending(server, "held", 2)  # queued behind the busy execution
            _wait_pending(server, "held", 1)  # left the queue when its client went
            assert not busy.done(), "the busy execution ended before the test could look"
            assert busy.result()[0] == 200
            status, _ = _infer(server, "held", 2.0)  # runs after the abandoned one would have
            assert status == 200
            stats = _stats(server, "held")
            counts = (int(stats["execution_count"]), int(stats["inference_count"]))  # type: ignore[call-overload]
            assert counts == (executed + 2, executed + 2), stats

            # 2. The server's queue bound (--max-queue-size 2) refuses at once; 0 in config.yaml is
            # Triton's unbounded.
            for model, refused in (("held", True), ("unbounded", False)):
                before = _launched(server, model)
                busy = pool.submit(_infer, server, model, busy_trips)
                _wait_started(server, model, before)
                waiting = [pool.submit(_infer, server, model, 1.0) for _ in range(4)]
                results = [f.result() for f in waiting]
                assert busy.result()[0] == 200
                statuses = sorted(status for status, _ in results)
                if refused:
                    assert statuses == [200, 200, 503, 503], results
                    assert all("maximum queue size 2" in str(b) for s, b in results if s == 503)
                else:
                    assert statuses == [200] * 4, results

            # 3. A hung execution fails with 504 after execution_timeout_s; the model keeps serving.
            started = time.monotonic()
            status, body_ = _infer(server, "hangs", busy_trips * 2)
            assert status == 504 and "execution timeout" in str(body_), body_
            assert time.monotonic() - started < 10
            status, answer = _infer(server, "hangs", 3.0)
            assert status == 200 and answer["outputs"][0]["data"] == [4.0] * 4  # type: ignore[index]
    finally:
        assert server.stop() == 0, server.log()


def _trips_lasting(server: RunningServer, model: str, seconds: float) -> int:
    """The stalling model's loop trips that keep an execution busy for about ``seconds`` here."""
    probe = 200
    started = time.monotonic()
    status, _ = _infer(server, model, probe)
    assert status == 200
    return max(probe, int(probe * seconds / (time.monotonic() - started)))


def _wait_pending(server: RunningServer, model: str, count: int) -> None:
    """Until the model holds ``count`` requests, queued or executing."""
    deadline = time.monotonic() + 30
    while value(scrape(server.http_url), "inferd_pending_requests", model=model, version="1") != count:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.01)


def _launched(server: RunningServer, model: str) -> int:
    """Requests that left the queue to run: the queue statistics count each one when it starts."""
    return int(_stats(server, model)["inference_stats"]["queue"]["count"])  # type: ignore[index]


def _wait_started(server: RunningServer, model: str, before: int) -> None:
    """Until one more request of the model started executing (its one instance is then busy)."""
    deadline = time.monotonic() + 30
    while _launched(server, model) == before:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)


def test_sigterm_finishes_within_the_drain_bound_while_a_model_hangs(tmp_path: Path) -> None:
    root = tmp_path / "models"
    _stalling(root, "hangs", "")
    server = start_server(root, tmp_path, "--drain-timeout", "1", "--execution-timeout", "0")
    outcome: list[int] = []
    before = _launched(server, "hangs")
    sender = threading.Thread(target=lambda: outcome.append(_send_quietly(server)), daemon=True)
    sender.start()
    _wait_started(server, "hangs", before)
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    try:
        assert server.process.wait(timeout=20) == 0, server.log()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    # Front-ends wait at most the drain timeout, then the model's drain at most as long again.
    assert time.monotonic() - signalled < 10, server.log()
    sender.join(timeout=10)
    assert outcome and outcome[0] != 200


def _send_quietly(server: RunningServer) -> int:
    """The status the hung request got (uvicorn answers a plain 500 to what it cancels), 0 if none."""
    try:
        body = json.dumps(_document(HUNG)).encode()
        return request(server.http_url, "POST", "/v2/models/hangs/infer", body)[0]
    except OSError:
        return 0


def test_grpc_calls_during_the_drain_are_unavailable_never_cancelled(tmp_path: Path) -> None:
    root = tmp_path / "models"
    mf.write_model(root, "fast", lambda p: mf.slow(p, 1), config="max_batch_size: 8\n")
    server = start_server(root, tmp_path, "--drain-timeout", "20")
    errors: Counter[str] = Counter()
    served = 0

    async def load() -> None:
        nonlocal served
        client = grpcaio.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 4), np.float32))

        async def caller() -> None:
            nonlocal served
            while True:  # until the first error: what the call got once the drain began
                try:
                    await client.infer("fast", [tensor], client_timeout=30)
                except InferenceServerException as exc:
                    errors[str(exc.status())] += 1
                    return
                served += 1

        callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
        while served < 3 * CALLERS:
            await asyncio.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*callers), 60)
        await client.close()

    try:
        asyncio.run(load())
        assert server.process.wait(timeout=30) == 0, server.log()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert set(errors) == {"StatusCode.UNAVAILABLE"}, errors
