"""Per-request cost of lifecycle routing: the handle lookup, the rollout check, the canary split.

Runs in-process (no HTTP), with a trivial runtime, so what is measured is inferd's own work:
    PYTHONPATH=. python benchmarks/lifecycle_routing.py [--requests N]
Works against older trees too (``ModelRepository.load_all``), to compare before/after:
    PYTHONPATH=/path/to/other/tree python benchmarks/lifecycle_routing.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np

import inferd
from inferd.dataplane.dataplane import DataPlane
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.types import InferRequest, Tensor, TensorSpec


class EchoRuntime:
    def __init__(self, path: Path, config: Any) -> None:
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 1

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}

    def close(self) -> None:
        pass


async def _repository(root: Path) -> ModelRepository:
    for version in (1, 2):
        (root / "m" / str(version)).mkdir(parents=True)
        (root / "m" / str(version) / "model.onnx").write_text("")
    repository = ModelRepository(root, EchoRuntime)
    if hasattr(repository, "load_initial"):
        (root / "m" / "config.yaml").write_text("version_policy: all\n")
        await repository.load_initial(None, exit_on_error=True)
    else:  # trees before the lifecycle manager
        repository.load_all()
    return repository


async def _infer_loop(dataplane: DataPlane, requests: int) -> list[float]:
    request = InferRequest("m", None, [Tensor("x", "FP32", np.ones((1, 4), dtype=np.float32))])
    samples = []
    for _ in range(requests):
        start = time.perf_counter_ns()
        await dataplane.infer(request)
        samples.append((time.perf_counter_ns() - start) / 1e3)
    return samples


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repository = await _repository(Path(tmp))
        dataplane = DataPlane(repository)
        print(f"inferd from {Path(inferd.__file__).parent}")
        get_ns = (
            min(timeit.repeat(lambda: repository.get("m", None), number=100_000, repeat=5)) / 100_000 * 1e9
        )
        print(f"repository.get(default)            {get_ns:8.1f} ns")
        await _infer_loop(dataplane, 1000)  # warm up
        plain = await _infer_loop(dataplane, requests)
        print(f"DataPlane.infer, no rollout        p50 {statistics.median(plain):7.1f} us")
        if hasattr(repository, "start_rollout"):
            from inferd.repository.rollout import Rollout

            split = Rollout("1", "2", _rollout_config(0.5), "bench")
            split_ns = min(timeit.repeat(split.takes_candidate, number=100_000, repeat=5)) / 100_000 * 1e9
            print(f"Rollout.takes_candidate            {split_ns:8.1f} ns")
            await repository.start_rollout("m", {"candidate": 1, "canary_percent": 0.5})
            canary = await _infer_loop(dataplane, requests)
            print(f"DataPlane.infer, canary 0.5%       p50 {statistics.median(canary):7.1f} us")
        await repository.close()


def _rollout_config(percent: float) -> Any:
    from inferd.model_config import RolloutConfig

    return RolloutConfig(candidate=1, canary_percent=percent)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().requests))
