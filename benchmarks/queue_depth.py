"""Event-loop cost of draining a deep queue: the batcher's batch forming at 32k waiting requests.

Queues DEPTH one-row requests (two shape groups, three priority levels) behind a held execution, then
releases it and times how long the queue takes to drain through a runtime that answers at once, plus
the time spent in queueing and batch forming alone. Uses only Batcher.infer, so it runs against any
inferd on PYTHONPATH (compare two trees by pointing PYTHONPATH at each):

    PYTHONPATH=$PWD python benchmarks/queue_depth.py [DEPTH] [LEVELS]

LEVELS 0 queues every request at one level (the model has no priorities); default 3.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import numpy as np

from inferd.runtimes.base import Signature
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.stats import ModelStats
from inferd.types import TensorSpec


class _Instant:
    def __init__(self) -> None:
        self.signature = Signature((TensorSpec("x", "FP32", (-1,)),), (TensorSpec("y", "FP32", (-1,)),), 8)
        self.instances = 1
        self.gate = threading.Event()

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.gate.wait()
        return {"y": inputs["x"]}

    def close(self) -> None:
        pass


async def _main(depth: int, levels: int) -> None:
    runtime = _Instant()
    stats = ModelStats()
    batcher = Batcher(runtime, BatchPolicy(max_batch_size=8, dynamic=True), stats, "bench")
    # Time batch forming alone (both the old and the new batcher have _take_batch).
    take = batcher._take_batch
    forming = [0, 0]

    def timed_take() -> object:
        start = time.perf_counter_ns()
        batch = take()
        forming[0] += time.perf_counter_ns() - start
        forming[1] += 1
        return batch

    batcher._take_batch = timed_take  # type: ignore[method-assign,assignment]
    narrow = {"x": np.zeros((1, 2), np.float32)}
    wide = {"x": np.zeros((1, 3), np.float32)}
    first = asyncio.create_task(batcher.infer(narrow, 1, (2,)))
    await asyncio.sleep(0.05)
    queued_at = time.perf_counter()
    tasks = [
        asyncio.create_task(
            batcher.infer(
                wide if i % 2 else narrow,
                1,
                (3,) if i % 2 else (2,),
                priority=1 + i % levels if levels else 0,
            )
        )
        for i in range(depth)
    ]
    await asyncio.sleep(0)
    queued_s = time.perf_counter() - queued_at
    started = time.perf_counter()
    runtime.gate.set()
    await asyncio.gather(first, *tasks)
    drained_s = time.perf_counter() - started
    executions = stats.execution_count - 1
    print(
        f"depth {depth}, {levels} levels: queueing {queued_s * 1e3:.0f} ms; "
        f"drain {drained_s * 1e3:.0f} ms for "
        f"{executions} batches ({drained_s / executions * 1e6:.0f} us each, event loop and worker); "
        f"batch forming {forming[0] / forming[1] / 1e3:.1f} us per batch"
    )
    await batcher.close()


if __name__ == "__main__":
    args = [int(arg) for arg in sys.argv[1:]]
    asyncio.run(_main(args[0] if args else 32_768, args[1] if len(args) > 1 else 3))
