"""Small real runtimes for batcher tests whose executions can be held, so queues form on purpose."""

from __future__ import annotations

import threading
import time

import numpy as np

from inferd.runtimes.base import Signature
from inferd.types import TensorSpec


def xy_signature(dims: tuple[int, ...]) -> Signature:
    """One FP32 input ``x`` and one output ``y`` of ``dims`` per row, batched up to 8 rows."""
    return Signature(
        inputs=(TensorSpec("x", "FP32", dims),), outputs=(TensorSpec("y", "FP32", dims),), max_batch_size=8
    )


class HeldRuntime:
    """Doubles its input; fails on negative values; executions wait while ``gate`` is clear, then take
    ``delay_s``. Records each execution's rows (``batches``) and the thread that ran it (``threads``)."""

    def __init__(self, instances: int = 1, delay_s: float = 0.0) -> None:
        self.signature = xy_signature((-1,))
        self.instances = instances
        self.delay_s = delay_s
        self.batches: list[int] = []
        self.threads: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        self.entered.set()
        self.gate.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        x = inputs["x"]
        self.batches.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2}

    def close(self) -> None:
        pass


class StuckRuntime:
    """Doubles its input, but an execution containing the value -1 hangs until ``release`` is set."""

    def __init__(self) -> None:
        self.signature = xy_signature((1,))
        self.instances = 1
        self.release = threading.Event()
        self.stuck = threading.Event()
        self.executed: list[float] = []
        self.threads: list[int] = []
        self.returned_late = threading.Event()

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.threads.append(threading.get_ident())
        if (x == -1).any():
            self.stuck.set()
            self.release.wait(30)
            self.returned_late.set()
        self.executed += x[:, 0].tolist()
        return {"y": x * 2}

    def close(self) -> None:
        pass
