"""Custom Python models: ``model.py`` holding one ``inferd.Model`` subclass, one object per instance.

Instances run in the batcher's worker threads. Whatever the user's code does wrong becomes an
``ExecutionError`` (500) naming the exception or what was expected; tracebacks go to the log only.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import re
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from inferd.datatypes import numpy_dtype
from inferd.errors import ExecutionError, InferdError, ModelLoadError
from inferd.model import Model, Response, Tensor
from inferd.model_config import PythonOptions, TensorOverride
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.runtimes.request_parameters import ModelParameters, accepts_parameters
from inferd.runtimes.response_parameters import ResponseOutputs, checked_parameters
from inferd.types import TensorSpec

log = logging.getLogger(__name__)

# Every import of a model.py gets a module name of its own: two versions (or a reload of the same
# one) never share module state or replace each other in sys.modules.
_imports = itertools.count(1)
_DEFAULT_SETTINGS = RuntimeSettings()
_DEFAULT_OPTIONS = PythonOptions()


class PythonRuntime:
    platform = "python"
    device_kind = "KIND_CPU"
    instance_kind = "thread"

    def __init__(
        self,
        path: Path,
        settings: RuntimeSettings = _DEFAULT_SETTINGS,
        options: PythonOptions = _DEFAULT_OPTIONS,
    ) -> None:
        version_dir = path.parent
        self._label = f"{version_dir.parent.name}/{version_dir.name}"
        self._module = import_model_file(path)
        try:
            cls = model_class(self._module, options.class_name, path)
            self._signature = signature_of(cls, settings, path)
            self.decoupled = is_decoupled(cls)
            # Decided once here: a model whose predict takes inputs only is called as it always was.
            self.takes_parameters, self.stream_takes_parameters = parameter_use(cls)
            self._models = [instantiate(cls, version_dir) for _ in range(settings.instances)]
        except BaseException:
            self.close()
            raise

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def instances(self) -> int:
        return len(self._models)

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parameters: ModelParameters | None = {} if self.takes_parameters else None
        return call_predict(self._models[instance], inputs, self._signature, self._label, parameters)

    def run_parameters(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters
    ) -> dict[str, np.ndarray]:
        return call_predict(self._models[instance], inputs, self._signature, self._label, parameters)

    def stream(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        passed = stream_parameters(self.stream_takes_parameters, parameters)
        return call_predict_stream(self._models[instance], inputs, self._signature, self._label, passed)

    def close(self) -> None:
        self._models = []
        name = self._module.__name__
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def import_model_file(path: Path) -> ModuleType:
    """Import ``path`` as a package of its own, so ``from . import helpers`` finds files beside it."""
    stem = re.sub(r"\W", "_", f"{path.parent.parent.name}_{path.parent.name}")
    name = f"inferd_model_{stem}_{next(_imports)}"
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=[str(path.parent)])
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        where = _where(exc, path)
        raise ModelLoadError(f"{where}: {describe_exception(exc)} (while importing {path.name})") from None
    return module


def model_class(module: ModuleType, class_name: str | None, path: Path) -> type[Model]:
    """The one Model subclass ``module`` defines (or the one ``class_name`` names)."""
    if class_name is not None:
        chosen = getattr(module, class_name, None)
        if not (isinstance(chosen, type) and issubclass(chosen, Model)):
            raise ModelLoadError(f"{path}: no Model subclass named '{class_name}' (python.class_name)")
        return chosen
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Model)
        and value is not Model
        and value.__module__ == module.__name__
    ]
    if not found:
        raise ModelLoadError(f"{path}: defines no subclass of inferd.Model")
    if len(found) > 1:
        names = ", ".join(sorted(c.__name__ for c in found))
        raise ModelLoadError(
            f"{path}: defines several Model subclasses ({names}); name one with python: {{class_name: ...}} "
            "in config.yaml"
        )
    return found[0]


def instantiate(cls: type[Model], version_dir: Path) -> Model:
    """One instance: construct it and run its ``load`` with the version directory."""
    source = Path(sys.modules[cls.__module__].__file__ or version_dir)
    try:
        model = cls()
        model.load(version_dir)
    except (Exception, SystemExit) as exc:
        where = _where(exc, source)
        raise ModelLoadError(f"{where}: {describe_exception(exc)} (while loading {cls.__name__})") from None
    return model


def signature_of(cls: type[Model], settings: RuntimeSettings, path: Path) -> Signature:
    """The class's declared signature, or config.yaml's when the class declares none; config.yaml's
    max_batch_size wins over the class's."""
    max_batch_size = settings.max_batch_size if settings.max_batch_size is not None else cls.max_batch_size
    if max_batch_size is None:
        max_batch_size = 0
    if not isinstance(max_batch_size, int) or isinstance(max_batch_size, bool) or max_batch_size < 0:
        raise ModelLoadError(f"{path}: max_batch_size must be a non-negative integer, got {max_batch_size!r}")
    inputs = _specs("input", cls.inputs, settings.inputs, max_batch_size, path)
    outputs = _specs("output", cls.outputs, settings.outputs, max_batch_size, path)
    if not outputs:
        raise ModelLoadError(f"{path}: the model declares no outputs")
    return Signature(inputs, outputs, max_batch_size)


def _specs(
    kind: str,
    declared: object,
    overrides: tuple[TensorOverride, ...],
    max_batch_size: int,
    path: Path,
) -> tuple[TensorSpec, ...]:
    if declared is None:
        specs = tuple(_from_config(kind, override, path) for override in overrides)
    else:
        if not isinstance(declared, list | tuple) or not all(isinstance(t, Tensor) for t in declared):
            raise ModelLoadError(f"{path}: {kind}s must be a list of inferd.Tensor")
        specs = tuple(_from_class(kind, tensor, max_batch_size, path) for tensor in declared)
        known = {spec.name: spec for spec in specs}
        for override in overrides:
            spec = known.get(override.name)
            if spec is None:
                raise ModelLoadError(
                    f"{path}: config {kind}s names '{override.name}', which the model does not declare "
                    f"(it has {sorted(known)})"
                )
            if (override.datatype, override.dims) != (None, None) and (
                override.datatype not in (None, spec.datatype) or override.dims not in (None, spec.dims)
            ):
                said = f"{override.datatype or spec.datatype} {list(override.dims or spec.dims)}"
                raise ModelLoadError(
                    f"{path}: config.yaml says {kind} '{spec.name}' is {said}, the class declares "
                    f"{spec.datatype} {list(spec.dims)} (batch dimension excluded)"
                )
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{path}: {kind} names repeat: {names}")
    return specs


def _from_class(kind: str, tensor: Tensor, max_batch_size: int, path: Path) -> TensorSpec:
    if max_batch_size == 0:
        return TensorSpec(tensor.name, tensor.datatype, tensor.shape)
    if not tensor.shape or tensor.shape[0] != -1:
        raise ModelLoadError(
            f"{path}: {kind} '{tensor.name}' has shape {list(tensor.shape)}, but the model batches "
            f"(max_batch_size {max_batch_size}): its shape starts with the batch dimension, -1"
        )
    return TensorSpec(tensor.name, tensor.datatype, tensor.shape[1:])


def _from_config(kind: str, override: TensorOverride, path: Path) -> TensorSpec:
    if override.datatype is None or override.dims is None:
        raise ModelLoadError(
            f"{path}: the class declares no {kind}s, so config.yaml's {kind} '{override.name}' needs "
            "datatype and dims"
        )
    return TensorSpec(override.name, override.datatype, override.dims)


def parameter_use(cls: type[Model]) -> tuple[bool, bool]:
    """Whether ``predict`` and the stream take the request's parameters (a second argument); the
    default ``predict_stream`` calls ``predict``, so it takes them when ``predict`` does."""
    predict = accepts_parameters(cls.predict)
    return predict, accepts_parameters(cls.predict_stream) if is_decoupled(cls) else predict


def stream_parameters(takes: bool, parameters: ModelParameters | None) -> ModelParameters | None:
    """What a stream hands its model: the request's parameters (an empty dict when it sent none)
    when the model takes them, else None (``predict_stream(inputs)``)."""
    if not takes:
        return None
    return {} if parameters is None else parameters


def predict(model: Model, inputs: dict[str, np.ndarray], parameters: ModelParameters | None) -> object:
    """``model.predict(inputs)``, or ``predict(inputs, parameters)`` when it takes them (not None)."""
    if parameters is None:
        return model.predict(inputs)
    return model.predict(inputs, parameters)  # type: ignore[call-arg]


def call_predict(
    model: Model,
    inputs: dict[str, np.ndarray],
    signature: Signature,
    label: str,
    parameters: ModelParameters | None = None,
) -> dict[str, np.ndarray]:
    """Run ``predict`` on one batch and check what it returned against the signature; ``parameters``
    go to a ``predict(inputs, parameters)`` (None: the model takes inputs only)."""
    try:
        outputs = predict(model, inputs, parameters)
    except InferdError:  # the model's own verdict (say InvalidRequest, a 400): passed on as it is
        raise
    except Exception as exc:
        raise _raised(label, "predict", exc) from None
    rows = next(iter(inputs.values())).shape[0] if signature.max_batch_size > 0 and inputs else None
    return check_outputs(outputs, signature, rows, label)


def is_decoupled(cls: type[Model]) -> bool:
    """Whether the class streams (its own ``predict_stream``): the streaming front-ends then answer
    with each response; any other model answers once, through its batcher."""
    return cls.predict_stream is not Model.predict_stream


def call_predict_stream(
    model: Model,
    inputs: dict[str, np.ndarray],
    signature: Signature,
    label: str,
    parameters: ModelParameters | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Run ``predict_stream`` on one request; each response is checked as ``predict``'s result is.
    ``parameters``: see ``stream_parameters``."""
    rows = next(iter(inputs.values())).shape[0] if signature.max_batch_size > 0 and inputs else None
    try:
        responses = iter(open_stream(model, inputs, parameters))
    except InferdError:
        raise
    except Exception as exc:
        raise _raised(label, "predict_stream", exc) from None
    while True:
        try:
            outputs = next(responses)
        except StopIteration:
            return
        except InferdError:
            raise
        except Exception as exc:
            raise _raised(label, "predict_stream", exc) from None
        yield check_outputs(outputs, signature, rows, label)


def open_stream(
    model: Model, inputs: dict[str, np.ndarray], parameters: ModelParameters | None
) -> Iterator[dict[str, np.ndarray] | Response]:
    """The model's stream of responses, given its parameters when it takes them."""
    if parameters is None:
        return model.predict_stream(inputs)
    if not is_decoupled(type(model)):  # the default stream: predict(inputs, parameters), once
        return iter((model.predict(inputs, parameters),))  # type: ignore[call-arg]
    return model.predict_stream(inputs, parameters)  # type: ignore[call-arg]


def _raised(label: str, method: str, exc: Exception) -> ExecutionError:
    """What the client gets when user code raised: the exception's type and message; the traceback,
    with an id to find it by, stays in the server log."""
    error_id = uuid.uuid4().hex[:12]
    log.error("model %s: %s raised (error id %s)", label, method, error_id, exc_info=exc)
    return ExecutionError(
        f"model {label}: {method} raised {describe_exception(exc)} (error id {error_id})", error_id
    )


def check_outputs(
    outputs: object, signature: Signature, rows: int | None, label: str
) -> dict[str, np.ndarray]:
    """``outputs`` as the declared arrays; ExecutionError saying what was expected otherwise. An
    ``inferd.Response`` gives its outputs, carrying its checked parameters (response_parameters.py)."""
    parameters = None
    if isinstance(outputs, Response):
        parameters = checked_parameters(outputs.parameters, label)
        outputs = outputs.outputs
    expected = [spec.name for spec in signature.outputs]
    if not isinstance(outputs, dict):
        raise ExecutionError(
            f"model {label}: predict returned {type(outputs).__name__}; expected a dict of {expected}"
        )
    if set(outputs) != set(expected):
        raise ExecutionError(
            f"model {label}: predict returned outputs {sorted(map(str, outputs))}; "
            f"expected {sorted(expected)}"
        )
    checked = {s.name: _checked(outputs[s.name], s, signature, rows, label) for s in signature.outputs}
    return ResponseOutputs(checked, parameters) if parameters else checked


def _checked(value: Any, spec: TensorSpec, signature: Signature, rows: int | None, label: str) -> np.ndarray:
    batched = signature.max_batch_size > 0
    shown = [-1, *spec.dims] if batched else list(spec.dims)
    where = f"model {label}: output '{spec.name}'"
    array = _as_bytes_array(value, where) if spec.datatype == "BYTES" else _as_numeric(value, spec, where)
    shape = array.shape[1:] if batched else array.shape
    fits = len(shape) == len(spec.dims) and all(d in (-1, s) for d, s in zip(spec.dims, shape, strict=True))
    if batched and array.ndim and rows is not None and array.shape[0] != rows:
        raise ExecutionError(
            f"{where} has {array.shape[0]} rows for a batch of {rows}; expected one row per input row"
        )
    if not fits or (batched and array.ndim == 0):
        raise ExecutionError(f"{where} has shape {list(array.shape)}; expected {shown}")
    return array


def _as_bytes_array(value: Any, where: str) -> np.ndarray:
    array = np.asarray(value, dtype=object)
    flat = array.reshape(-1)
    out = np.empty(flat.size, dtype=object)
    for i, element in enumerate(flat):
        if isinstance(element, bytes):
            out[i] = bytes(element)
        elif isinstance(element, str):
            out[i] = element.encode("utf-8")
        else:
            kind = type(element).__name__
            raise ExecutionError(f"{where} is BYTES; an element is {kind}, not bytes or str")
    return out.reshape(array.shape)


def _as_numeric(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    dtype = numpy_dtype(spec.datatype)
    array = np.asarray(value)
    if array.dtype == dtype:
        return array
    if array.dtype.kind in "OSU" or not np.can_cast(array.dtype, dtype, "same_kind"):
        raise ExecutionError(f"{where} is {spec.datatype}; predict returned {array.dtype} values")
    return array.astype(dtype)


def describe_exception(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _where(exc: BaseException, path: Path) -> str:
    """``file:line`` of the failure: the innermost frame in the model's directory, else the last."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    directory = str(path.parent)
    inside = [f for f in frames if f.filename.startswith(directory)]
    chosen = inside or frames
    if not chosen:
        return str(path)
    return f"{chosen[-1].filename}:{chosen[-1].lineno}"
