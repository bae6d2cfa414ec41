"""Benchmark candidates at the model's batch sizes, each in a fresh process (docs/optimize.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferd.model_config import ModelConfig


class BenchmarkError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class BenchSettings:
    iterations: int = 50
    min_time_s: float = 1.0
    warmup: int = 5
    # Candidates are measured in turn this many times; each keeps its fastest round, so a burst of
    # load from other processes during one round does not decide the ranking.
    rounds: int = 2
    timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class BenchFigures:
    file_bytes: int
    peak_rss_bytes: int
    load_s: float
    # One dict per batch size: batch_size, runs, p50_ms, p99_ms, inferences_per_s.
    batches: tuple[dict[str, Any], ...]

    def throughput(self, batch_size: int) -> float:
        return next(float(b["inferences_per_s"]) for b in self.batches if b["batch_size"] == batch_size)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file_bytes": self.file_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
            "load_s": round(self.load_s, 4),
            "batches": list(self.batches),
        }


def batch_sizes(config: ModelConfig, batched: bool, cap: int) -> list[int]:
    """The sizes the model executes at: 1, its preferred batch sizes and its cap."""
    if not batched:
        return [1]
    preferred = config.dynamic_batching.preferred_batch_sizes if config.dynamic_batching else ()
    return sorted({1, *preferred, cap})


def speedup(candidate: BenchFigures, baseline: BenchFigures) -> float:
    """Geometric mean over the batch sizes of candidate / baseline throughput."""
    ratios = [candidate.throughput(b["batch_size"]) / float(b["inferences_per_s"]) for b in baseline.batches]
    return float(np.exp(np.mean(np.log(ratios))))


def fastest(first: BenchFigures | None, second: BenchFigures) -> BenchFigures:
    """The round with the higher geometric-mean throughput."""
    if first is None:
        return second
    return second if speedup(second, first) > 1.0 else first


def run(
    model: Path,
    samples_npz: Path,
    sizes: list[int],
    batched: bool,
    config: ModelConfig,
    settings: BenchSettings,
    workdir: Path,
) -> BenchFigures:
    spec = {
        "model": str(model),
        "samples": str(samples_npz),
        "batch_sizes": sizes,
        "batched": batched,
        "intra_op_threads": config.onnxruntime.intra_op_threads,
        "inter_op_threads": config.onnxruntime.inter_op_threads,
        "iterations": settings.iterations,
        "min_time_s": settings.min_time_s,
        "warmup": settings.warmup,
    }
    spec_path = workdir / f"{model.stem}.bench.json"
    spec_path.write_text(json.dumps(spec))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "inferd.optimize.benchworker", str(spec_path)],
            capture_output=True,
            timeout=settings.timeout_s,
            env=os.environ.copy(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"benchmark of {model.name} took over {settings.timeout_s:g} s") from None
    finally:
        spec_path.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise BenchmarkError(f"benchmark of {model.name} failed: {tail[0]}")
    result = json.loads(done.stdout)
    return BenchFigures(
        model.stat().st_size, int(result["peak_rss_bytes"]), float(result["load_s"]), tuple(result["batches"])
    )
