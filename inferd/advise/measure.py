"""The advisor's measurements on this machine, with ONNX Runtime sessions in this process.

``probe`` times batches while every instance of a layout executes at once (so instances that fight
for cores show it), in two or three rounds, and reports the lowest round median
(``search.low_time``): on a shared machine other processes only add time, in bursts. ``verify``
replays a Poisson arrival stream at a given rate through a queue that the layout's instances drain
in batches of up to the cap, as inferd's batcher does with no queue delay, and reports the
throughput sustained and the p99 of queue wait plus execution. Neither counts the network and
protocol cost of a real request: measure that with ``inferd bench`` against the server.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inferd.advise.search import Config, Layout, Verified, low_time, settled

# Rounds per probe at most; fewer when two agree within PROBE_AGREE (``search.settled``).
PROBE_ROUNDS = 3
PROBE_AGREE = 1.05
# Runs per round: up to PROBE_RUNS, fewer when a batch is slow (a round lasts about PROBE_ROUND_S).
PROBE_RUNS = 10
PROBE_ROUND_S = 0.15
VERIFY_S = 2.0
# Requests one verification replays: at least enough for a p99 that is not just the maximum, at most
# what a fast model's predicted rate would need.
VERIFY_MIN_REQUESTS = 50
VERIFY_MAX_REQUESTS = 20_000
# The latency a request left unserved counts with (a finite one: percentiles interpolate).
UNSERVED_S = 1e6
# Session pools kept, the most recently used: a (version, threads) pool serves every instance count.
KEEP_POOLS = 3


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
    """Sessions per (version, intra-op threads), created once and reused by every layout that runs
    them: a layout of n instances takes the pool's first n sessions (grown when it has fewer), so
    1 x 1 and 2 x 1 share one, and a layout verified after the probes of others does not build
    again (the advisor verifies its contenders after probing every layout). The KEEP_POOLS most
    recently used pools are kept: at most the cores' worth of sessions per pool."""

    def __init__(
        self,
        files: dict[int, Path],
        feed: Feed,
        verify_s: float = VERIFY_S,
        min_requests: int = VERIFY_MIN_REQUESTS,
        slo_s: float | None = None,
    ) -> None:
        """``slo_s``: the p99 the verifications are judged against; with it, a verification stops as
        soon as enough requests are known late for its p99 to miss (``late_enough``)."""
        self._files = files
        self._feed = feed
        self._verify_s = verify_s
        self._min_requests = min_requests
        self._slo_s = slo_s
        self._pools: OrderedDict[tuple[int, int], list[ort.InferenceSession]] = OrderedDict()
        self.built = 0

    def of(self, layout: Layout) -> list[ort.InferenceSession]:
        key = (layout.version, layout.threads)
        pool = self._pools.setdefault(key, [])
        self._pools.move_to_end(key)
        while len(self._pools) > KEEP_POOLS:
            self._pools.popitem(last=False)
        if len(pool) < layout.instances:
            options = ort.SessionOptions()
            options.intra_op_num_threads = layout.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # As inferd serves it (onnxruntime.allow_spinning defaults to false): spinning workers
            # would take the cores the other instances and the dispatch loop need, and only here.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            path = str(self._files[layout.version])
            for _ in range(layout.instances - len(pool)):
                pool.append(
                    ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
                )
                self.built += 1
        return pool[: layout.instances]

    def probe(self, layout: Layout, batch: int) -> float:
        """Seconds per batch of ``batch`` rows, every instance executing concurrently: the lowest of
        up to PROBE_ROUNDS round medians (two when they agree)."""
        feed = self._feed(batch)
        sessions = self.of(layout)
        warm: list[float] = []
        # The first run of a shape allocates: the second one sizes the rounds. When the first alone
        # takes a round's time the rounds hold one run each anyway: a slow model (the cnn: a third
        # of a second per batch) skips the second.
        _together([partial(_timed, s, feed, 1, warm) for s in sessions])
        if min(warm) < PROBE_ROUND_S:
            _together([partial(_timed, s, feed, 1, warm) for s in sessions])
        runs = max(1, min(PROBE_RUNS, int(PROBE_ROUND_S / max(min(warm), 1e-6))))
        rounds: list[list[float]] = []
        for _ in range(PROBE_ROUNDS):
            rounds.append([])
            _together([partial(_timed, s, feed, runs, rounds[-1]) for s in sessions])
            if settled(rounds, PROBE_AGREE):
                break
        return low_time(rounds)

    def verify(self, config: Config, rate: float) -> Verified:
        """Poisson arrivals at ``rate`` for ``verify_s`` seconds (within ``min_requests`` and
        VERIFY_MAX_REQUESTS), drained by the layout's instances. An overloaded run stops a while after
        the last arrival: what is left unserved counts as infinitely late. With an SLO, a run whose
        p99 is already sure to miss it stops there (a slow model's misses took twice a hold's time)."""
        rng = np.random.default_rng(0)
        count = max(self._min_requests, min(int(rate * self._verify_s), VERIFY_MAX_REQUESTS))
        arrivals = np.cumsum(rng.exponential(1.0 / rate, count))
        feeds = {b: self._feed(b) for b in range(1, config.batch_cap + 1)}
        latencies = np.full(count, UNSERVED_S)
        lock = threading.Lock()
        taken = late = 0
        slo_s = self._slo_s if self._slo_s is not None else UNSERVED_S
        enough = late_enough(count)
        start = time.perf_counter() + 0.05
        give_up = arrivals[-1] + max(1.0, self._verify_s)
        stopped = [give_up]

        def work(session: ort.InferenceSession) -> None:
            nonlocal taken, late
            while True:
                now = time.perf_counter() - start
                with lock:
                    first = taken
                    # Late for sure: answered late, or still waiting longer than the SLO already.
                    waiting_late = int(np.searchsorted(arrivals, now - slo_s, side="left")) - first
                    if first >= count or now > stopped[0] or late + max(0, waiting_late) >= enough:
                        stopped[0] = min(stopped[0], now)
                        return
                    ready = int(np.searchsorted(arrivals, now, side="right"))
                    last = min(ready, first + config.batch_cap)
                    taken = max(taken, last)
                if last <= first:
                    time.sleep(max(0.0, min(arrivals[first] - now, 0.001)))
                    continue
                session.run(None, feeds[last - first])
                done = time.perf_counter() - start - arrivals[first:last]
                latencies[first:last] = done
                with lock:
                    late += int((done > slo_s).sum())

        _together([partial(work, s) for s in self.of(config.layout)])
        ended = time.perf_counter() - start
        # Stopped early: what it served over the time it ran (under overload, its capacity).
        elapsed = ended if stopped[0] < give_up else max(ended, arrivals[-1])
        served = int((latencies < UNSERVED_S).sum())
        return Verified(served / elapsed, float(np.percentile(latencies, 99)), rate)


def late_enough(count: int) -> int:
    """Late requests out of ``count`` that make the p99 (numpy's linear interpolation) late whatever
    the others: the lower of the two values it interpolates between is then late too."""
    return count - int(0.99 * (count - 1))


def _timed(session: ort.InferenceSession, feed: dict[str, np.ndarray], runs: int, out: list[float]) -> None:
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        out.append(time.perf_counter() - start)


def _together(jobs: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
