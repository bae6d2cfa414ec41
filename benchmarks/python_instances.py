"""``instance_kind: process`` against ``thread`` for Python models: what the process hop costs per
batch, and whether two worker processes scale a GIL-bound predict where two threads cannot.

    python benchmarks/python_instances.py [--runs 2000] [--spin 2000000] [--requests 16]

1. Hop: ``runtime.run`` of an identity model, thread vs process, on a [1, 30] FP32 tensor, a 1 MB
   FP32 tensor and 8 short BYTES elements (median of 7 rounds, microseconds per batch): wall time, and
   the CPU time of the server and the worker process together (Linux /proc), which a machine busy
   with other work does not inflate as it inflates wall time (each hop waits for a core twice).
2. Scaling: a pure-Python loop in ``predict`` (``--spin`` iterations) behind inferd's Batcher with 2
   instances, ``--requests`` concurrent requests, requests per second for thread vs process (and the
   1-instance thread figure as the baseline), with the cores kept busy meanwhile (CPU seconds per
   wall second): threads cannot pass 1 (the GIL), processes can reach the instance count when the
   machine has the cores free.

Rounds alternate between the kinds (medians reported), so other load on the machine hits both alike.
Prints a table and writes benchmarks/results/python_instances.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from inferd.model_config import load_model_config
from inferd.runtimes.base import Runtime
from inferd.runtimes.registry import create_runtime
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.stats import ModelStats

HERE = Path(__file__).resolve().parent

IDENTITY = """
from inferd import Model, Tensor

class Identity(Model):
    inputs = [Tensor("x", "FP32", [-1, -1]), Tensor("t", "BYTES", [-1])]
    outputs = [Tensor("y", "FP32", [-1, -1]), Tensor("u", "BYTES", [-1])]
    max_batch_size = 64

    def predict(self, inputs):
        return {"y": inputs["x"], "u": inputs["t"]}
"""
SPIN = """
import numpy as np
from inferd import Model, Tensor

class Spin(Model):
    inputs = [Tensor("n", "INT64", [1])]
    outputs = [Tensor("total", "INT64", [1])]

    def predict(self, inputs):
        total = 0
        for i in range(int(inputs["n"][0])):
            total += i
        return {"total": np.array([total], dtype=np.int64)}
"""


def _runtime(root: Path, name: str, source: str, kind: str, instances: int) -> Runtime:
    model_dir = root / f"{name}-{kind}-{instances}"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(textwrap.dedent(source))
    (model_dir / "config.yaml").write_text(f"instance_kind: {kind}\ninstances: {instances}\n")
    return create_runtime(model_dir / "1" / "model.py", load_model_config(model_dir))


def _cpu_s(pids: list[int]) -> float:
    """CPU time used so far by this process and by ``pids`` (user + system)."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _batch_us(runtime: Runtime, inputs: dict[str, np.ndarray], runs: int) -> tuple[float, float]:
    """Wall and CPU (server + worker process) microseconds per batch."""
    pids = list(getattr(runtime, "pids", []))
    cpu = _cpu_s(pids)
    start = time.perf_counter()
    for _ in range(runs):
        runtime.run(0, inputs)
    wall = time.perf_counter() - start
    return wall / runs * 1e6, (_cpu_s(pids) - cpu) / runs * 1e6


_ECHO = """
import socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
while data := sock.recv(64):
    sock.sendall(data)
"""


def socket_round_trip_us(runs: int) -> float:
    """The floor under any process hop: one small message to another process and back over a Unix
    socket, with nothing else done (median of 7 rounds)."""
    ours, theirs = socket.socketpair()
    child = subprocess.Popen([sys.executable, "-c", _ECHO, str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    rounds = []
    try:
        for _ in range(8):
            start = time.perf_counter()
            for _ in range(runs):
                ours.sendall(b"x" * 32)
                ours.recv(64)
            rounds.append((time.perf_counter() - start) / runs * 1e6)
    finally:
        ours.close()
        child.wait()
    return statistics.median(rounds[1:])


def hop(root: Path, runs: int) -> list[dict[str, object]]:
    one_bytes = np.array([b"hello"], dtype=object)
    cases = {
        "FP32 [1,30]": {"x": np.ones((1, 30), np.float32), "t": one_bytes},
        "FP32 1 MB [1,262144]": {"x": np.ones((1, 262_144), np.float32), "t": one_bytes},
        "BYTES 8 x 16 B": {
            "x": np.ones((8, 1), np.float32),
            "t": np.array([b"sixteen bytes!!!"] * 8, dtype=object),
        },
    }
    rows = []
    runtimes = {kind: _runtime(root, "identity", IDENTITY, kind, 1) for kind in ("thread", "process")}
    try:
        for case, inputs in cases.items():
            n = runs if "1 MB" not in case else max(runs // 10, 50)
            for runtime in runtimes.values():
                _batch_us(runtime, inputs, min(200, n))  # warm: regions grown, caches filled
            # Rounds alternate between the kinds, so load from elsewhere on the machine hits both alike.
            wall: dict[str, list[float]] = {kind: [] for kind in runtimes}
            cpu: dict[str, list[float]] = {kind: [] for kind in runtimes}
            for _ in range(7):
                for kind, runtime in runtimes.items():
                    wall_us, cpu_us = _batch_us(runtime, inputs, n)
                    wall[kind].append(wall_us)
                    cpu[kind].append(cpu_us)
            row: dict[str, object] = {"case": case}
            for kind in runtimes:
                row[f"{kind}_us"] = statistics.median(wall[kind])
                row[f"{kind}_cpu_us"] = statistics.median(cpu[kind])
            row["hop_us"] = float(row["process_us"]) - float(row["thread_us"])  # type: ignore[arg-type]
            row["hop_cpu_us"] = float(row["process_cpu_us"]) - float(row["thread_cpu_us"])  # type: ignore[arg-type]
            rows.append(row)
    finally:
        for runtime in runtimes.values():
            runtime.close()
    return rows


async def _throughput(runtime: Runtime, spin: int, requests: int) -> tuple[float, float]:
    """Requests per second, and the cores busy meanwhile (CPU seconds of the server and its worker
    processes per wall second: at most 1 while the GIL serializes the predicts)."""
    batcher = Batcher(runtime, BatchPolicy(max_batch_size=0), ModelStats(), "spin")
    inputs = {"n": np.array([spin], dtype=np.int64)}
    await batcher.infer(inputs, 1)  # warm
    pids = list(getattr(runtime, "pids", []))
    cpu = _cpu_s(pids)
    start = time.perf_counter()
    await asyncio.gather(*(batcher.infer(inputs, 1) for _ in range(requests)))
    elapsed = time.perf_counter() - start
    cores = (_cpu_s(pids) - cpu) / elapsed
    await batcher.close()
    return requests / elapsed, cores


def scaling(root: Path, spin: int, requests: int) -> list[dict[str, object]]:
    setups = (("thread", 1), ("thread", 2), ("process", 2))
    runtimes = {setup: _runtime(root, "spin", SPIN, *setup) for setup in setups}
    rates: dict[tuple[str, int], list[float]] = {setup: [] for setup in setups}
    cores: dict[tuple[str, int], list[float]] = {setup: [] for setup in setups}
    try:
        for _ in range(3):  # interleaved rounds, median of each
            for setup, runtime in runtimes.items():
                rate, busy = asyncio.run(_throughput(runtime, spin, requests))
                rates[setup].append(rate)
                cores[setup].append(busy)
    finally:
        for runtime in runtimes.values():
            runtime.close()
    return [
        {
            "kind": kind,
            "instances": instances,
            "requests_per_s": statistics.median(rates[(kind, instances)]),
            "cores_busy": statistics.median(cores[(kind, instances)]),
        }
        for kind, instances in setups
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="batches per round in the hop test")
    parser.add_argument("--spin", type=int, default=2_000_000, help="loop iterations per predict")
    parser.add_argument("--requests", type=int, default=16, help="concurrent requests in the scaling test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        floor_us = socket_round_trip_us(args.runs)
        hops = hop(root, args.runs)
        scale = scaling(root, args.spin, args.requests)
    print(f"a bare Unix-socket round trip to another process: {floor_us:.1f} µs (the floor under a hop)")
    print("per batch, µs: wall time, and CPU time of the server and its worker process together")
    print(
        f"{'batch':<22}{'thread':>9}{'process':>9}{'hop':>9}"
        f"{'thread CPU':>12}{'process CPU':>13}{'hop CPU':>9}"
    )
    for r in hops:
        print(
            f"{r['case']:<22}{r['thread_us']:>9.1f}{r['process_us']:>9.1f}{r['hop_us']:>9.1f}"
            f"{r['thread_cpu_us']:>12.1f}{r['process_cpu_us']:>13.1f}{r['hop_cpu_us']:>9.1f}"
        )
    print()
    base = float(scale[0]["requests_per_s"])  # type: ignore[arg-type]
    print(f"GIL-bound predict ({args.spin} loop iterations), {args.requests} concurrent requests")
    print(f"{'kind':<10}{'instances':>10}{'req/s':>10}{'vs 1 thread':>13}{'cores busy':>12}")
    for row in scale:
        rate = float(row["requests_per_s"])  # type: ignore[arg-type]
        busy = float(row["cores_busy"])  # type: ignore[arg-type]
        print(f"{row['kind']:<10}{row['instances']:>10}{rate:>10.2f}{rate / base:>12.2f}x{busy:>12.2f}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    document = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "args": vars(args),
        "socket_round_trip_us": floor_us,
        "hop": hops,
        "gil_bound_scaling": scale,
    }
    (results / "python_instances.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
