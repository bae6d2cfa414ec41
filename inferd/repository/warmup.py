"""Warm-up: sample requests run on every instance of a new version before it takes traffic."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferd.datatypes import numpy_dtype
from inferd.errors import ModelLoadError
from inferd.model_config import WarmupSample
from inferd.repository.deadline import StoppedAtDeadline
from inferd.repository.paths import resolve_inside
from inferd.runtimes.base import Runtime, Signature
from inferd.types import TensorSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ColdStart:
    """How long a version took to become servable, in milliseconds (None: no warm-up ran)."""

    load_ms: float
    first_inference_ms: float | None
    warm_p50_ms: float | None
    # Growth of the process's resident memory across load and warm-up (approximate: other threads
    # allocate too); None where /proc is not available.
    rss_delta_mb: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "load_ms": _round(self.load_ms),
            "first_inference_ms": _round(self.first_inference_ms),
            "warm_p50_ms": _round(self.warm_p50_ms),
            "rss_delta_mb": _round(self.rss_delta_mb),
        }

    def describe(self) -> str:
        """For the load log line, naming only what was measured: 'load 4.1 ms, first inference
        0.36 ms, warm p50 0.027 ms, RSS +12.5 MiB', or 'load 4.1 ms, no warm-up'."""
        parts = [f"load {_round(self.load_ms)} ms"]
        if self.first_inference_ms is None:
            parts.append("no warm-up")
        else:
            parts.append(f"first inference {_round(self.first_inference_ms)} ms")
        if self.warm_p50_ms is not None:
            parts.append(f"warm p50 {_round(self.warm_p50_ms)} ms")
        if self.rss_delta_mb is not None:
            parts.append(f"RSS {self.rss_delta_mb:+.1f} MiB")
        return ", ".join(parts)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def rss_bytes() -> int | None:
    """The process's resident set size (Linux), or None."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def sample_inputs(
    sample: WarmupSample, signature: Signature, model_dir: Path, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One warm-up request; raises ModelLoadError naming what is wrong with the sample."""
    if signature.max_batch_size == 0 and sample.batch_size != 1:
        raise ModelLoadError(
            f"{model_dir}: warm-up batch_size {sample.batch_size} on a model without batching"
        )
    if sample.batch_size > max(signature.max_batch_size, 1):
        raise ModelLoadError(
            f"{model_dir}: warm-up batch_size {sample.batch_size} exceeds max_batch_size "
            f"{signature.max_batch_size}"
        )
    if sample.data == "file":
        return _from_file(model_dir, str(sample.file), signature)
    batch = (sample.batch_size,) if signature.max_batch_size > 0 else ()
    return {spec.name: _generate(spec, batch, sample.data, rng) for spec in signature.inputs}


def _generate(spec: TensorSpec, batch: tuple[int, ...], data: str, rng: np.random.Generator) -> np.ndarray:
    # A variable dim (-1) gets size 1: the smallest request the model must accept.
    shape = (*batch, *(1 if d < 0 else d for d in spec.dims))
    dtype = numpy_dtype(spec.datatype)
    if spec.datatype == "BYTES":
        return np.full(shape, b"0" if data == "zeros" else b"warmup", dtype=object)
    if data == "zeros":
        return np.zeros(shape, dtype=dtype)
    if spec.datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    return rng.random(size=shape).astype(dtype)


def _from_file(model_dir: Path, file: str, signature: Signature) -> dict[str, np.ndarray]:
    # Confined to the model's directory after following symlinks; outside, one answer whether the
    # file exists or not. Messages name the file as the config does, never the resolved path.
    shown = model_dir / file
    path = resolve_inside(model_dir, file)
    if path is None:
        raise ModelLoadError(f"{shown}: warm-up file is not inside the model directory")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModelLoadError(f"{shown}: cannot read warm-up data: {reason}") from None
    missing = [spec.name for spec in signature.inputs if spec.name not in arrays]
    if missing:
        raise ModelLoadError(f"{shown}: warm-up data lacks input(s) {', '.join(missing)}")
    return {spec.name: arrays[spec.name] for spec in signature.inputs}


def warm_up(
    runtime: Runtime,
    samples: tuple[WarmupSample, ...],
    model_dir: Path,
    load_ms: float,
    stop: Callable[[], bool] = lambda: False,
) -> ColdStart:
    """Run every sample ``count`` times on every instance (blocking; call it off the event loop).

    ``stop`` is asked before each run: once it answers True (the load's deadline passed and the load
    was abandoned), the warm-up ends with ModelLoadError rather than running on unobserved.
    Raises ModelLoadError when a sample cannot be built or the model fails on it.
    """
    rng = np.random.default_rng(0)
    timings_ms: list[float] = []
    for sample in samples:
        inputs = sample_inputs(sample, runtime.signature, model_dir, rng)
        for instance in range(runtime.instances):
            for _ in range(sample.count):
                if stop():
                    log.info(
                        "%s: warm-up stopped at the load deadline after %d runs", model_dir, len(timings_ms)
                    )
                    raise StoppedAtDeadline(f"{model_dir}: warm-up stopped at the load deadline")
                start = time.perf_counter()
                try:
                    runtime.run(instance, inputs)
                except Exception as exc:
                    raise ModelLoadError(
                        f"{model_dir}: warm-up failed (batch_size {sample.batch_size}): {exc}"
                    ) from None
                timings_ms.append((time.perf_counter() - start) * 1e3)
    if not timings_ms:
        return ColdStart(load_ms, None, None)
    warm = timings_ms[1:] or timings_ms
    return ColdStart(load_ms, timings_ms[0], float(np.median(warm)))
