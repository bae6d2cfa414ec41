"""Candidate files built from the served version's ONNX file, each by one method.

A method that does not apply (FP16 without a GPU provider, transformer fusions on a graph without
attention, a quantizer that found no operator to quantize) yields a skipped candidate with the reason,
so the report lists every method and why it was or was not tried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from inferd.optimize.sessions import GPU_PROVIDERS

log = logging.getLogger(__name__)

# Operators whose presence shows a quantizer changed the graph.
_QUANTIZED_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "QuantizeLinear",
        "QLinearMatMul",
        "QLinearConv",
        "QAttention",
        "DynamicQuantizeLSTM",
    }
)
_FUSED_OPS = frozenset(
    {
        "Attention",
        "MultiHeadAttention",
        "SkipLayerNormalization",
        "EmbedLayerNormalization",
        "BiasGelu",
        "FastGelu",
        "Gelu",
        "LayerNormalization",
        "SkipSimplifiedLayerNormalization",
    }
)


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    method: str
    # None when skipped; then ``skipped`` says why.
    path: Path | None
    skipped: str = ""


Calibration = Callable[[], Iterator[dict[str, np.ndarray]]]


METHODS = ("ort_all", "dynamic_int8", "dynamic_uint8", "static_int8_qdq", "fp16", "transformer_fusions")


def build_all(
    source: Path, workdir: Path, calibration: Calibration, only: frozenset[str] = frozenset()
) -> list[Candidate]:
    """Every method's candidate (or the reason it was skipped), written under ``workdir``; with
    ``only``, just those methods."""
    builders: list[tuple[str, str, Callable[[Path, Path], str]]] = [
        ("ort_all", "ONNX Runtime offline graph optimization, level all", _graph_optimized),
        ("dynamic_int8", "dynamic INT8, per-channel QInt8 weights", lambda s, d: _dynamic(s, d, "QInt8")),
        ("dynamic_uint8", "dynamic INT8, per-channel QUInt8 weights", lambda s, d: _dynamic(s, d, "QUInt8")),
        (
            "static_int8_qdq",
            "static INT8 (QDQ), calibrated on the samples",
            lambda s, d: _static(s, d, calibration),
        ),
        ("fp16", "FP16 weights and activations", _fp16),
        ("transformer_fusions", "onnxruntime.transformers fusions (bert)", _fusions),
    ]
    built = []
    for name, method, build in builders:
        if only and name not in only:
            continue
        target = workdir / f"{name}.onnx"
        # The quantizers log advice on the root logger (pre-processing, calibration); not ours to show.
        logging.disable(logging.WARNING)
        try:
            skipped = build(source, target)
        except Exception as exc:  # a method failing on this graph is a finding, not a crash
            log.info("candidate %s failed to build: %s", name, exc)
            skipped = f"failed to build: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        finally:
            logging.disable(logging.NOTSET)
        built.append(Candidate(name, method, None if skipped else target, skipped))
    return built


def user_candidate(path: Path) -> Candidate:
    return Candidate(path.stem, f"user candidate {path.name}", path)


def _graph_optimized(source: Path, target: Path) -> str:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    # CPU only: a file optimized for one provider may hold nodes only that provider runs.
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
    return ""


def _dynamic(source: Path, target: Path, weights: str) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, per_channel=True, weight_type=QuantType[weights])
    return _quantized_or_reason(target)


def _static(source: Path, target: Path, calibration: Calibration) -> str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = calibration()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    quantize_static(
        source,
        target,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return _quantized_or_reason(target)


def _fp16(source: Path, target: Path) -> str:
    gpu = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
    if not gpu:
        return "no GPU execution provider (FP16 runs slower than FP32 on the CPU provider)"
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save_model(model, str(target))
    return ""


def _fusions(source: Path, target: Path) -> str:
    model = onnx.load(str(source))
    ops = {node.op_type for node in model.graph.node}
    if "Softmax" not in ops or "MatMul" not in ops:
        return "not a transformer graph (no MatMul + Softmax attention)"
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", opt_level=0)
    fused = {node.op_type for node in optimized.model.graph.node} & _FUSED_OPS
    if not fused - ops:
        return "no transformer fusion applied to this graph"
    optimized.save_model_to_file(str(target))
    return ""


def _quantized_or_reason(target: Path) -> str:
    ops = {node.op_type for node in onnx.load(str(target), load_external_data=False).graph.node}
    if ops & _QUANTIZED_OPS:
        return ""
    target.unlink(missing_ok=True)
    return (
        "no operator this quantizer handles (MatMul, Conv, Attention, ...; Gemm is not quantized dynamically)"
    )
