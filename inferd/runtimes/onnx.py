"""ONNX Runtime: one InferenceSession per instance, signature read from the graph."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inferd.cores import thread_budget
from inferd.errors import InvalidRequest, ModelLoadError
from inferd.model_config import OnnxRuntimeOptions, TensorOverride
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.types import TensorSpec

log = logging.getLogger(__name__)

# Batching models whose config does not set max_batch_size accept up to this many rows per execution.
DEFAULT_MAX_BATCH_SIZE = 64

_ORT_TYPE_TO_DATATYPE = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}
_ONNX_BFLOAT16 = 16
_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_DEFAULT_SETTINGS = RuntimeSettings()
_DEFAULT_OPTIONS = OnnxRuntimeOptions()


class OnnxRuntime:
    # The registry's name for this runtime (inferd.runtimes.registry).
    platform = "onnxruntime"

    def __init__(
        self,
        model_path: Path,
        settings: RuntimeSettings = _DEFAULT_SETTINGS,
        options: OnnxRuntimeOptions = _DEFAULT_OPTIONS,
    ) -> None:
        self._path = model_path
        self._instances = settings.instances
        session_options = _session_options(options, settings.instances)
        providers = _providers(options, model_path)
        try:
            self._sessions = [
                ort.InferenceSession(str(model_path), sess_options=session_options, providers=providers)
                for _ in range(settings.instances)
            ]
        except Exception as exc:  # ORT raises several unrelated types for bad files
            raise ModelLoadError(f"{model_path}: ONNX Runtime cannot load the model: {exc}") from None
        session = self._sessions[0]
        self._signature = _signature(session, settings, model_path)
        accelerated = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
        self.device_kind = "KIND_GPU" if accelerated & set(session.get_providers()) else "KIND_CPU"
        self._output_names = [spec.name for spec in self._signature.outputs]
        self._string_inputs = {s.name for s in self._signature.inputs if s.datatype == "BYTES"}
        self._string_outputs = {s.name for s in self._signature.outputs if s.datatype == "BYTES"}
        self._uses_bf16 = any(s.datatype == "BF16" for s in self._signature.inputs + self._signature.outputs)

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def instances(self) -> int:
        return self._instances

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[instance]
        feed: dict[str, Any] = inputs
        if self._string_inputs:
            feed = {
                name: _to_str(a, name) if name in self._string_inputs else a for name, a in inputs.items()
            }
        if self._uses_bf16:
            results = self._run_ort_values(session, feed)
        else:
            results = session.run(self._output_names, feed)
        outputs = dict(zip(self._output_names, results, strict=True))
        for name in self._string_outputs:
            outputs[name] = _to_bytes(outputs[name])
        return outputs

    def _run_ort_values(self, session: ort.InferenceSession, feed: dict[str, Any]) -> list[np.ndarray]:
        # numpy has no bfloat16: BF16 tensors travel as uint16 words and are handed to ORT by type number.
        bf16_inputs = {s.name for s in self._signature.inputs if s.datatype == "BF16"}
        values = {
            name: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(np.ascontiguousarray(a), _ONNX_BFLOAT16)
            if name in bf16_inputs
            else ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a))
            for name, a in feed.items()
        }
        results = session.run_with_ort_values(self._output_names, values)
        arrays = []
        for spec, value in zip(self._signature.outputs, results, strict=True):
            if spec.datatype == "BF16":
                arrays.append(_bf16_words(value).reshape(value.shape()))
            else:
                arrays.append(value.numpy())
        return arrays

    def close(self) -> None:
        self._sessions.clear()


def _bf16_words(value: Any) -> np.ndarray:
    # OrtValue.numpy() refuses bfloat16; copy its bytes out through the data pointer instead.
    import ctypes

    count = int(np.prod(value.shape()))
    buffer = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    words: np.ndarray = np.ctypeslib.as_array(buffer).copy()
    return words


def _to_str(array: np.ndarray, name: str) -> np.ndarray:
    # ONNX string tensors hold text: bytes that are not UTF-8 are the client's error, not the model's.
    try:
        flat = [e.decode("utf-8") if isinstance(e, bytes) else str(e) for e in array.reshape(-1)]
    except UnicodeDecodeError:
        raise InvalidRequest(
            f"input '{name}': this model takes text, and a BYTES element is not valid UTF-8"
        ) from None
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _to_bytes(array: np.ndarray) -> np.ndarray:
    flat = [e.encode("utf-8") if isinstance(e, str) else bytes(e) for e in array.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _session_options(options: OnnxRuntimeOptions, instances: int) -> ort.SessionOptions:
    session_options = ort.SessionOptions()
    cores = thread_budget()  # this process's share of the usable cores (inferd/cores.py)
    session_options.intra_op_num_threads = options.intra_op_threads or max(1, cores // instances)
    session_options.inter_op_num_threads = options.inter_op_threads or 1
    session_options.graph_optimization_level = _OPT_LEVELS[options.graph_optimization_level]
    spinning = "1" if options.allow_spinning else "0"
    session_options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    session_options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    session_options.enable_cpu_mem_arena = options.enable_cpu_mem_arena
    session_options.enable_mem_pattern = options.enable_mem_pattern
    session_options.log_severity_level = 3
    return session_options


def _providers(options: OnnxRuntimeOptions, model_path: Path) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = []
    for name in options.execution_providers:
        provider = _PROVIDERS[name]
        if provider in available:
            chosen.append(provider)
        else:
            log.warning("%s: execution provider '%s' is not available here; falling back", model_path, name)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _signature(session: ort.InferenceSession, config: RuntimeSettings, path: Path) -> Signature:
    def datatype(node: Any) -> str:
        try:
            return _ORT_TYPE_TO_DATATYPE[node.type]
        except KeyError:
            raise ModelLoadError(
                f"{path}: '{node.name}' has type {node.type}, which inferd cannot serve"
            ) from None

    nodes = list(session.get_inputs()) + list(session.get_outputs())
    batchable = all(node.shape and not isinstance(node.shape[0], int) for node in nodes)
    max_batch_size = config.max_batch_size
    if max_batch_size is None:
        max_batch_size = DEFAULT_MAX_BATCH_SIZE if batchable else 0
    elif max_batch_size > 0 and not batchable:
        raise ModelLoadError(
            f"{path}: max_batch_size is {max_batch_size} but not every input and output has a variable "
            "first dimension; set max_batch_size: 0 for a model without a batch dimension"
        )

    def spec(node: Any, overrides: tuple[TensorOverride, ...]) -> TensorSpec:
        dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in node.shape)
        if max_batch_size > 0:
            dims = dims[1:]
        result = TensorSpec(node.name, datatype(node), dims)
        override = next((o for o in overrides if o.name == node.name), None)
        return _apply_override(result, override, path) if override else result

    for kind, overrides, graph_nodes in (
        ("input", config.inputs, session.get_inputs()),
        ("output", config.outputs, session.get_outputs()),
    ):
        known = {node.name for node in graph_nodes}
        for override in overrides:
            if override.name not in known:
                raise ModelLoadError(
                    f"{path}: config {kind}s names '{override.name}', which the model does not have "
                    f"(it has {sorted(known)})"
                )
    return Signature(
        inputs=tuple(spec(node, config.inputs) for node in session.get_inputs()),
        outputs=tuple(spec(node, config.outputs) for node in session.get_outputs()),
        max_batch_size=max_batch_size,
    )


def _apply_override(spec: TensorSpec, override: TensorOverride, path: Path) -> TensorSpec:
    if override.datatype is not None and override.datatype != spec.datatype:
        raise ModelLoadError(
            f"{path}: config says '{spec.name}' is {override.datatype} but the model has {spec.datatype}"
        )
    dims = spec.dims
    if override.dims is not None:
        compatible = len(override.dims) == len(spec.dims) and all(
            g == -1 or g == o for g, o in zip(spec.dims, override.dims, strict=True)
        )
        if not compatible:
            raise ModelLoadError(
                f"{path}: config dims {list(override.dims)} for '{spec.name}' do not fit the model's "
                f"{list(spec.dims)} (batch dimension excluded)"
            )
        dims = override.dims
    return TensorSpec(spec.name, spec.datatype, dims)
