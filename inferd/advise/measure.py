"""The advisor's measurements on this machine, with ONNX Runtime sessions in this process.

``probe`` times batches while every instance of a layout executes at once (so instances that fight
for cores show it). ``verify`` replays a Poisson arrival stream at a given rate through a queue that
the layout's instances drain in batches of up to the cap, as inferd's batcher does with no queue
delay, and reports the throughput sustained and the p99 of queue wait plus execution. Neither counts
the network and protocol cost of a real request: measure that with ``inferd bench`` against the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inferd.advise.search import Config, Layout, Verified

PROBE_RUNS = 20
VERIFY_S = 2.0
# Requests one verification replays at most (a fast model's predicted rate can be very high).
VERIFY_MAX_REQUESTS = 20_000


_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
}

Feed = Callable[[int], dict[str, np.ndarray]]


def random_feeder(path: Path) -> Feed:
    """Random inputs of any batch size, shaped as the model's inputs (variable dims as 1)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    specs = [(i.name, i.shape, _DTYPES.get(i.type, np.float32)) for i in session.get_inputs()]
    rng = np.random.default_rng(0)
    cache: dict[int, dict[str, np.ndarray]] = {}

    def feed(batch: int) -> dict[str, np.ndarray]:
        if batch not in cache:
            arrays = {}
            for name, shape, dtype in specs:
                dims = [batch] + [d if isinstance(d, int) else 1 for d in shape[1:]]
                values = rng.random(dims) * (10 if np.issubdtype(dtype, np.integer) else 1)
                arrays[name] = values.astype(dtype)
            cache[batch] = arrays
        return cache[batch]

    return feed


class Sessions:
    """Sessions per layout, created once and reused by its probes and its verification."""

    def __init__(self, files: dict[int, Path], feed: Feed) -> None:
        self._files = files
        self._feed = feed
        self._sessions: dict[Layout, list[ort.InferenceSession]] = {}

    def of(self, layout: Layout) -> list[ort.InferenceSession]:
        sessions = self._sessions.get(layout)
        if sessions is None:
            # One layout's sessions at a time: the others' memory is not needed any more.
            self._sessions.clear()
            options = ort.SessionOptions()
            options.intra_op_num_threads = layout.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            path = str(self._files[layout.version])
            sessions = [
                ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
                for _ in range(layout.instances)
            ]
            self._sessions[layout] = sessions
        return sessions

    def probe(self, layout: Layout, batch: int) -> float:
        """Median seconds per batch of ``batch`` rows, every instance executing concurrently."""
        feed = self._feed(batch)
        times: list[list[float]] = []

        def work(session: ort.InferenceSession) -> None:
            session.run(None, feed)  # warm this shape
            mine = []
            for _ in range(PROBE_RUNS):
                start = time.perf_counter()
                session.run(None, feed)
                mine.append(time.perf_counter() - start)
            times.append(mine)

        _together([partial(work, s) for s in self.of(layout)])
        return float(np.median(np.concatenate(times)))

    def verify(self, config: Config, rate: float) -> Verified:
        """Poisson arrivals at ``rate`` for VERIFY_S seconds (or VERIFY_MAX_REQUESTS), drained by the
        layout's instances."""
        rng = np.random.default_rng(0)
        count = max(1, min(int(rate * VERIFY_S), VERIFY_MAX_REQUESTS))
        arrivals = np.cumsum(rng.exponential(1.0 / rate, count))
        feeds = {b: self._feed(b) for b in range(1, config.batch_cap + 1)}
        latencies = np.zeros(count)
        lock = threading.Lock()
        taken = 0
        start = time.perf_counter() + 0.05

        def work(session: ort.InferenceSession) -> None:
            nonlocal taken
            while True:
                now = time.perf_counter() - start
                with lock:
                    first = taken
                    if first >= count:
                        return
                    ready = int(np.searchsorted(arrivals, now, side="right"))
                    last = min(ready, first + config.batch_cap)
                    taken = max(taken, last)
                if last <= first:
                    time.sleep(max(0.0, min(arrivals[first] - now, 0.001)))
                    continue
                session.run(None, feeds[last - first])
                latencies[first:last] = time.perf_counter() - start - arrivals[first:last]

        _together([partial(work, s) for s in self.of(config.layout)])
        elapsed = max(time.perf_counter() - start, arrivals[-1])
        return Verified(count / elapsed, float(np.percentile(latencies, 99)))


def _together(jobs: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
