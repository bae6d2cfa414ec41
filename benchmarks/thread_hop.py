"""What one crossing from the event loop to a worker thread and back costs, next to the batcher's own
round trip: the figures behind the concurrency model in docs/architecture.md.

    python benchmarks/thread_hop.py [--repository examples/models] [--runs 5000]

Prints microseconds per request (median of 5 rounds) for: an inline call, a ThreadPoolExecutor hop, a
SimpleQueue worker hop, and inferd's Batcher (validate-free) on each example model next to the bare
ORT run it wraps. Writes benchmarks/results/thread_hop.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import uvloop

from inferd.repository.manager import ModelRepository

HERE = Path(__file__).resolve().parent


def _noop() -> int:
    return 1


async def _timed(one: Callable[[], Awaitable[object]], runs: int) -> float:
    for _ in range(300):
        await one()
    start = time.perf_counter()
    for _ in range(runs):
        await one()
    return (time.perf_counter() - start) / runs * 1e6


async def inline(runs: int) -> float:
    loop = asyncio.get_running_loop()

    async def one() -> None:
        future = loop.create_future()
        future.set_result(_noop())
        await future

    return await _timed(one, runs)


async def executor_hop(runs: int) -> float:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1)

    async def one() -> None:
        future = loop.create_future()
        done = pool.submit(_noop)
        done.add_done_callback(lambda d: loop.call_soon_threadsafe(future.set_result, d.result()))
        await future

    try:
        return await _timed(one, runs)
    finally:
        pool.shutdown()


async def simple_queue_hop(runs: int) -> float:
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[asyncio.Future[int] | None] = queue.SimpleQueue()

    def worker() -> None:
        while (future := jobs.get()) is not None:
            loop.call_soon_threadsafe(future.set_result, _noop())

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()

    async def one() -> None:
        future: asyncio.Future[int] = loop.create_future()
        jobs.put(future)
        await future

    try:
        return await _timed(one, runs)
    finally:
        jobs.put(None)
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repository", type=Path, default=Path("examples/models"))
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "thread_hop.json")
    args = parser.parse_args()
    results: dict[str, float] = {}
    for name, bench in (
        ("inline", inline),
        ("executor hop", executor_hop),
        ("simplequeue hop", simple_queue_hop),
    ):
        results[name] = statistics.median(uvloop.run(bench(args.runs)) for _ in range(5))

    repository = ModelRepository(args.repository)
    repository.load_all()
    for entry in repository.entries():
        model = repository.get(entry.name)
        spec = model.signature.inputs[0]
        x = np.zeros((1, *(d if d > 0 else 1 for d in spec.dims)), dtype=np.float32)
        inputs = {spec.name: x}
        bare = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(args.runs):
                model.runtime.run(0, inputs)
            bare.append((time.perf_counter() - start) / args.runs * 1e6)
        results[f"{entry.name}: ORT run"] = statistics.median(bare)

        async def batcher_rounds(runs: int, model: object = model, inputs: object = inputs) -> list[float]:
            # One loop for every round: a Batcher belongs to the loop it first ran on.
            return [await _timed(lambda: model.batcher.infer(inputs, 1), runs) for _ in range(5)]  # type: ignore[attr-defined]

        results[f"{entry.name}: Batcher.infer"] = statistics.median(uvloop.run(batcher_rounds(args.runs)))
    for name, us in results.items():
        print(f"{name:28} {us:8.1f} us")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
