"""Client threads that keep a real server busy during a lifecycle change and record every answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

# One request: returns (answering version, what the answer means), raises on any failure.
Send = Callable[[], tuple[str, Any]]


@dataclass
class ThreadRecord:
    answers: list[tuple[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class LoadGenerator:
    """``threads`` clients sending back to back until ``stop``; each client's answers kept in order."""

    def __init__(self, make_sender: Callable[[int], Send], threads: int = 4) -> None:
        self._make_sender = make_sender
        self.records = [ThreadRecord() for _ in range(threads)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, index: int) -> None:
        record = self.records[index]
        send = self._make_sender(index)
        while not self._stop.is_set():
            try:
                answer = send()
            except Exception as exc:
                with self._lock:
                    record.errors.append(repr(exc))
                continue
            with self._lock:
                record.answers.append(answer)

    def snapshot(self) -> list[ThreadRecord]:
        with self._lock:
            return [ThreadRecord(list(r.answers), list(r.errors)) for r in self.records]

    def errors(self) -> list[str]:
        return [error for record in self.snapshot() for error in record.errors]

    def answers(self) -> list[tuple[str, Any]]:
        return [answer for record in self.snapshot() for answer in record.answers]

    def wait_for(self, condition: Callable[[LoadGenerator], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}; errors: {self.errors()[:5]}"
                )
            time.sleep(0.02)

    def count_after(self, mark: list[int]) -> int:
        """Answers recorded since ``mark`` (a per-thread count from ``marks``)."""
        return sum(len(r.answers) - m for r, m in zip(self.snapshot(), mark, strict=True))

    def marks(self) -> list[int]:
        return [len(r.answers) for r in self.snapshot()]


def add_constant_sender(url_http: str, url_grpc: str, model: str, index: int) -> Send:
    """Requests to an ``add_constant`` model; the meaning of an answer is the constant it added
    (None when the output is not ``INPUT0 + c`` for one c: a wrong answer). Odd threads use gRPC."""
    rng = np.random.default_rng(index)
    if index % 2:
        grpc_client = grpcclient.InferenceServerClient(url_grpc)

        def send_grpc() -> tuple[str, Any]:
            data = rng.random((1, 4), dtype=np.float32)
            tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
            tensor.set_data_from_numpy(data)
            result = grpc_client.infer(model, [tensor])
            version = result.get_response().model_version
            return version, _constant(data, result.as_numpy("OUTPUT0"))

        return send_grpc
    http_client = httpclient.InferenceServerClient(url_http, network_timeout=120)

    def send_http() -> tuple[str, Any]:
        data = rng.random((1, 4), dtype=np.float32)
        tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(data, binary_data=True)
        result = http_client.infer(model, [tensor])
        version = result.get_response()["model_version"]
        return version, _constant(data, result.as_numpy("OUTPUT0"))

    return send_http


def _constant(data: np.ndarray, output: np.ndarray | None) -> float | None:
    if output is None or output.shape != data.shape:
        return None
    added = output - data
    constant = float(np.round(added[0, 0], 3))
    return constant if np.allclose(added, constant, atol=1e-4) else None


def load_across_a_swap(
    url_http: str, url_grpc: str, model: str, swap: Callable[[], None], timeout_s: float
) -> LoadGenerator:
    """Four clients call ``model`` (add-constant, REST and gRPC) while ``swap()`` replaces the version
    that adds 1.0 with one that adds 2.0; returns the finished load once every client has had version
    2's answers and 40 more answers came."""
    sender = lambda i: add_constant_sender(url_http, url_grpc, model, i)  # noqa: E731
    with LoadGenerator(sender, threads=4) as load:
        load.wait_for(lambda lg: len(lg.answers()) >= 40, timeout_s, "answers from version 1")
        swap()
        load.wait_for(
            lambda lg: all(r.answers and r.answers[-1][1] == 2.0 for r in lg.snapshot()),
            timeout_s,
            "every client to get version 2's answers",
        )
        mark = load.marks()
        load.wait_for(lambda lg: lg.count_after(mark) >= 40, timeout_s, "more answers")
    return load
