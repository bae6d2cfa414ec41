"""The runtime of the scikit-learn, XGBoost and LightGBM platforms.

One input (``input`` unless config.yaml names it otherwise; [batch, n_features], FP32 or FP64) and the
outputs ``predict`` and, for classifiers, ``predict_proba``. By default (``convert: auto``) the model is
converted to ONNX at load and the conversion served through the ONNX runtime when it agrees with the
native model on generated rows (inferd/runtimes/tabular/conversion.py); otherwise the native model
serves, and the reason is logged and reported in the model's configuration (``parameters``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from inferd.cores import thread_budget
from inferd.datatypes import numpy_dtype
from inferd.errors import ModelLoadError
from inferd.model_config import FrameworkOptions, OnnxRuntimeOptions, TensorOverride
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.runtimes.onnx import OnnxRuntime
from inferd.runtimes.tabular.conversion import (
    Agreement,
    ConversionFailed,
    compare,
    prepare_graph,
    sample_rows,
)
from inferd.runtimes.tabular.native import NativeModel
from inferd.types import TensorSpec

log = logging.getLogger(__name__)

# Tree ensembles gain from large batches, and a request is one row or a few.
DEFAULT_MAX_BATCH_SIZE = 256
ONNX_OPSET = 17
INPUT = "input"
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
# What the converters call their outputs.
_CONVERTED_NAMES = {"label": PREDICT, "probabilities": PREDICT_PROBA, "variable": PREDICT}


class TabularRuntime:
    device_kind = "KIND_CPU"

    def __init__(
        self,
        platform: str,
        path: Path,
        settings: RuntimeSettings,
        options: FrameworkOptions,
        load: Callable[[int], NativeModel],
    ) -> None:
        self.platform = platform
        self._instances = settings.instances
        threads = options.threads or max(1, thread_budget() // settings.instances)
        first = load(threads)
        self._classifier = first.predict_proba is not None
        self._targets = first.targets
        self._signature = _signature(first, settings, path)
        self._input = self._signature.inputs[0]
        self._dtypes = {spec.name: numpy_dtype(spec.datatype) for spec in self._signature.outputs}
        self._onnx: OnnxRuntime | None = None
        self._natives: list[NativeModel] = []
        # Reported in the model's configuration: what serves it, and why.
        self.parameters: dict[str, str] = {}
        if options.convert == "never":
            self._serve_native(first, load, threads, "convert: never")
            return
        try:
            self._onnx, agreement = self._convert(first, path, settings, threads)
        except ConversionFailed as exc:
            if options.convert == "always":
                raise ModelLoadError(f"{path}: convert: always, but {exc}") from None
            log.warning("%s: serving the native model: %s", path, exc)
            self._serve_native(first, load, threads, str(exc))
            return
        error = (
            f"predict_proba within {agreement.max_proba_error:.2g}"
            if self._classifier
            else f"predict within {agreement.max_predict_error:.2g} relative"
        )
        self.parameters = {
            "runtime": "onnxruntime",
            "conversion": (
                f"converted with {first.converter}; agrees with the native {first.kind} on "
                f"{agreement.rows} generated rows ({error})"
            ),
        }
        log.info("%s: serving the ONNX conversion (%s)", path, self.parameters["conversion"])

    def _serve_native(
        self, first: NativeModel, load: Callable[[int], NativeModel], threads: int, reason: str
    ) -> None:
        self._natives = [first] + [load(threads) for _ in range(self._instances - 1)]
        self.parameters = {"runtime": "native", "conversion": reason}

    def _convert(
        self, native: NativeModel, path: Path, settings: RuntimeSettings, threads: int
    ) -> tuple[OnnxRuntime, Agreement]:
        cannot = f"{native.converter} cannot convert the {native.kind}"
        try:
            graph = native.convert(self._input.name)
        except ModelLoadError as exc:  # the converter package is missing
            raise ConversionFailed(f"not converted: {str(exc).removeprefix(f'{path}: ')}") from None
        except Exception as exc:  # converters raise many unrelated types for what they cannot do
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise ConversionFailed(f"{cannot}: {type(exc).__name__}: {first_line}") from None
        renames = {name: _CONVERTED_NAMES.get(name, name) for name in _graph_outputs(graph)}
        wanted = {spec.name for spec in self._signature.outputs}
        if set(renames.values()) != wanted:
            raise ConversionFailed(f"{cannot}: its graph has outputs {sorted(renames)}")
        with tempfile.TemporaryDirectory(prefix="inferd-convert-") as scratch:
            onnx_path = Path(scratch) / "model.onnx"
            onnx_path.write_bytes(prepare_graph(graph, renames))
            batching = RuntimeSettings(settings.instances, max(1, self._signature.max_batch_size))
            try:
                runtime = OnnxRuntime(onnx_path, batching, OnnxRuntimeOptions(intra_op_threads=threads))
            except ModelLoadError as exc:
                raise ConversionFailed(f"{cannot}: {str(exc).removeprefix(f'{onnx_path}: ')}") from None
        rows = sample_rows(native, numpy_dtype(self._input.datatype))
        expected = self._native_outputs(native, rows, wanted)
        disagrees = f"the {native.converter} conversion disagrees with the native {native.kind}"
        try:
            converted = self._onnx_outputs(runtime, 0, rows)
            agreement = compare(expected, converted, self._classifier)
        except ConversionFailed as exc:
            runtime.close()
            raise ConversionFailed(f"{disagrees}: {exc}") from None
        except Exception as exc:
            runtime.close()
            raise ConversionFailed(f"{cannot}: its graph fails on generated rows: {exc}") from None
        return runtime, agreement

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def instances(self) -> int:
        return self._instances

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_outputs(instance, inputs, self._dtypes)

    def run_outputs(
        self, instance: int, inputs: dict[str, np.ndarray], outputs: Collection[str]
    ) -> dict[str, np.ndarray]:
        """Run one batch for ``outputs``: the native model computes only those; ONNX gives all at once."""
        rows = inputs[self._input.name]
        if self._onnx is not None:
            return self._onnx_outputs(self._onnx, instance, rows)
        return self._native_outputs(self._natives[instance], rows, outputs)

    def _onnx_outputs(self, runtime: OnnxRuntime, instance: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        # The graph takes FP32; an FP64 model's rows are narrowed (the load-time check covers that).
        results = runtime.run(instance, {self._input.name: rows.astype(np.float32, copy=False)})
        return {name: self._conform(name, array) for name, array in results.items()}

    def _native_outputs(
        self, native: NativeModel, rows: np.ndarray, outputs: Collection[str]
    ) -> dict[str, np.ndarray]:
        results: dict[str, np.ndarray] = {}
        if PREDICT in outputs:
            results[PREDICT] = self._conform(PREDICT, np.asarray(native.predict(rows)))
        if PREDICT_PROBA in outputs and native.predict_proba is not None:
            results[PREDICT_PROBA] = self._conform(PREDICT_PROBA, np.asarray(native.predict_proba(rows)))
        return results

    def _conform(self, name: str, array: np.ndarray) -> np.ndarray:
        """One output in the signature's shape and type, whichever way it was computed."""
        if name == PREDICT and (self._classifier or self._targets == 1):
            array = array.reshape(len(array))
        dtype = self._dtypes[name]
        if dtype == np.object_:
            return _as_bytes(array)
        return array.astype(dtype, copy=False)

    def close(self) -> None:
        if self._onnx is not None:
            self._onnx.close()
        self._natives = []


def _graph_outputs(graph: Any) -> list[str]:
    return [str(value.name) for value in graph.graph.output]


def _as_bytes(array: np.ndarray) -> np.ndarray:
    flat = [e if isinstance(e, bytes) else str(e).encode("utf-8") for e in array.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _label_datatype(classes: np.ndarray) -> str:
    if classes.dtype.kind in "iub":
        return "INT64"
    if classes.dtype.kind == "f":
        return "FP64"
    return "BYTES"


def _signature(native: NativeModel, settings: RuntimeSettings, path: Path) -> Signature:
    input_override = _input_override(settings.inputs, native.n_features, path)
    name = input_override.name if input_override else INPUT
    float_type = (input_override.datatype if input_override else None) or "FP32"
    max_batch_size = DEFAULT_MAX_BATCH_SIZE if settings.max_batch_size is None else settings.max_batch_size
    batch: tuple[int, ...] = () if max_batch_size > 0 else (-1,)
    outputs = [
        TensorSpec(
            PREDICT,
            _label_datatype(native.classes) if native.classes is not None else float_type,
            (*batch, native.targets) if native.classes is None and native.targets > 1 else batch,
        )
    ]
    if native.classes is not None:
        outputs.append(TensorSpec(PREDICT_PROBA, float_type, (*batch, len(native.classes))))
    for override in settings.outputs:
        spec = next((s for s in outputs if s.name == override.name), None)
        if spec is None:
            raise ModelLoadError(
                f"{path}: config outputs names '{override.name}'; this model's outputs are "
                f"{', '.join(s.name for s in outputs)}"
            )
        if override.datatype not in (None, spec.datatype) or override.dims not in (None, spec.dims):
            raise ModelLoadError(
                f"{path}: config output '{spec.name}' must be {spec.datatype} {list(spec.dims)} "
                "(batch dimension excluded)"
            )
    return Signature(
        inputs=(TensorSpec(name, float_type, (*batch, native.n_features)),),
        outputs=tuple(outputs),
        max_batch_size=max_batch_size,
    )


def _input_override(
    overrides: tuple[TensorOverride, ...], n_features: int, path: Path
) -> TensorOverride | None:
    if not overrides:
        return None
    if len(overrides) > 1:
        raise ModelLoadError(f"{path}: config inputs lists {len(overrides)} inputs; this model takes one")
    override = overrides[0]
    if override.datatype not in (None, "FP32", "FP64"):
        raise ModelLoadError(f"{path}: config input '{override.name}' must be FP32 or FP64")
    if override.dims not in (None, (n_features,)):
        raise ModelLoadError(
            f"{path}: config input '{override.name}' has dims {list(override.dims or ())}; the model "
            f"takes {n_features} features: [{n_features}] (batch dimension excluded)"
        )
    return override
