"""In-process cost of DataPlane.infer per request, to compare hot-path changes between checkouts.

Runs the bundled tabular model (ORT ~6 us) through repository -> data plane -> batcher -> ORT on
one event loop, sequentially, so the figure is the server's own per-request work plus one run.
Rows: plain request; with a `timeout` parameter (admission path); with response_cache on (hit).

    PYTHONPATH=<checkout> python benchmarks/dataplane_overhead.py [--requests 20000] [--rounds 5]

It uses only APIs present before the hardening work, so it runs on older checkouts too (rows that
need newer features are skipped there).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from inferd.dataplane.dataplane import DataPlane
from inferd.examples import build_repository
from inferd.repository.manager import ModelRepository
from inferd.types import InferRequest, Tensor


async def _per_request_us(dataplane: DataPlane, request: InferRequest, count: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(count):
        await dataplane.infer(request)
    return (time.perf_counter_ns() - start) / count / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    supports_cache = "cache" in inspect.signature(DataPlane).parameters
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        build_repository(root)
        if supports_cache:
            shutil.copytree(root / "tabular", root / "tabular_cached")
            config = root / "tabular_cached" / "config.yaml"
            config.write_text(config.read_text() + "response_cache: true\n")
        repository = ModelRepository(root)
        repository.load_all()
        cache = None
        if supports_cache:
            from inferd.cache.memory import MemoryCache

            cache = MemoryCache(1 << 26)
        dataplane = DataPlane(repository, cache) if supports_cache else DataPlane(repository)
        data = np.random.default_rng(0).standard_normal((1, 30)).astype(np.float32)
        inputs = [Tensor("input", "FP32", data)]
        rows = {"plain": InferRequest("tabular", None, inputs)}
        if supports_cache:
            rows["timeout parameter"] = InferRequest("tabular", None, inputs, parameters={"timeout": 10**9})
            rows["response cache hit"] = InferRequest("tabular_cached", None, inputs)

        async def run() -> None:
            for label, request in rows.items():
                await _per_request_us(dataplane, request, 2000)  # warm-up
                samples = [
                    await _per_request_us(dataplane, request, args.requests) for _ in range(args.rounds)
                ]
                print(f"{label:22s} median {statistics.median(samples):7.2f} us  min {min(samples):7.2f} us")
            await repository.close()

        asyncio.run(run())


if __name__ == "__main__":
    main()
