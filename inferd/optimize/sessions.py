"""Run an ONNX file over the samples with ONNX Runtime, the way the served version's config runs it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inferd.model_config import ModelConfig
from inferd.optimize.samples import SampleError, Samples

# Rows per execution when the samples are run for the gate (the model's cap when it is lower).
GATE_BATCH = 64
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the gate and the benchmark need to know of the served graph."""

    inputs: dict[str, type]
    # Output name -> ORT element type ("tensor(float)", "tensor(int64)", ...).
    outputs: dict[str, str]
    batched: bool
    max_batch_size: int


def providers() -> list[str]:
    """A GPU provider first where ONNX Runtime has one, then the CPU."""
    available = ort.get_available_providers()
    return [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]


def open_session(path: Path, config: ModelConfig, optimize: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.onnxruntime.intra_op_threads
    options.inter_op_num_threads = config.onnxruntime.inter_op_threads
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=providers())


def facts(session: ort.InferenceSession, config: ModelConfig) -> Facts:
    inputs = {i.name: _ORT_DTYPES.get(i.type, np.float32) for i in session.get_inputs()}
    outputs = {o.name: o.type for o in session.get_outputs()}
    symbolic = all(
        i.shape and not isinstance(i.shape[0], int) for i in [*session.get_inputs(), *session.get_outputs()]
    )
    batched = config.max_batch_size > 0 if config.max_batch_size is not None else symbolic
    cap = config.max_batch_size or (GATE_BATCH if batched else 0)
    return Facts(inputs, outputs, batched, cap)


def feeds(samples: Samples, model: Facts) -> dict[str, np.ndarray]:
    """The samples cast to the model's input types; a missing or unknown input is a SampleError."""
    missing = sorted(set(model.inputs) - set(samples.arrays))
    if missing:
        raise SampleError(f"{samples.origin}: no samples for input(s) {', '.join(missing)}")
    unknown = sorted(set(samples.arrays) - set(model.inputs))
    if unknown:
        raise SampleError(
            f"{samples.origin}: {', '.join(unknown)} not an input of the model "
            f"(inputs: {', '.join(model.inputs)})"
        )
    return {name: np.asarray(samples.arrays[name], dtype=dtype) for name, dtype in model.inputs.items()}


def chunks(arrays: dict[str, np.ndarray], model: Facts) -> Iterator[dict[str, np.ndarray]]:
    """Executions covering every row: batches of up to the cap, or one row at a time unbatched."""
    rows = min(len(a) for a in arrays.values())
    step = min(model.max_batch_size, GATE_BATCH) if model.batched else 1
    for start in range(0, rows, step):
        if model.batched:
            yield {n: a[start : start + step] for n, a in arrays.items()}
        else:
            yield {n: a[start] for n, a in arrays.items()}


def run_all(
    session: ort.InferenceSession, arrays: dict[str, np.ndarray], model: Facts
) -> dict[str, np.ndarray]:
    """Every output over every row, stacked on axis 0 (one row per sample)."""
    names = list(model.outputs)
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in chunks(arrays, model):
        for name, value in zip(names, session.run(names, feed), strict=True):
            value = np.asarray(value)
            collected[name].append(value if model.batched else value[np.newaxis])
    return {n: np.concatenate(parts) for n, parts in collected.items()}
