"""PyTorch on CPU: TorchScript (``model.pt``) and torch.export programs (``model.pt2``).

torch is an optional extra, imported when a model of this platform loads. One module serves every
instance (forward under ``torch.inference_mode()`` does not change it, so N threads may call it at
once; the weights are in memory once). Tensors go in positionally in the signature's order and come
back as a tensor, a tuple/list of tensors or a dict of them, mapped to the declared outputs.

Threads: torch's intra-op thread count is held per OS thread (OpenMP), so each execution sets its
model's count on the thread it runs on when that thread holds another. The inter-op pool is one per
process and can be sized once: the first model that asks sizes it, later different asks are logged.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferd.cores import thread_budget
from inferd.errors import ExecutionError, InferdError, ModelLoadError
from inferd.model_config import PyTorchOptions, TensorOverride
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.runtimes.python import check_outputs
from inferd.types import TensorSpec

log = logging.getLogger(__name__)

# As for ONNX: an exported program whose batch dimension is dynamic batches up to this many rows.
DEFAULT_MAX_BATCH_SIZE = 64
INSTALL_HINT = (
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, "
    "then pip install 'inferd[pytorch]'"
)
_DEFAULT_SETTINGS = RuntimeSettings()
_DEFAULT_OPTIONS = PyTorchOptions()
# Triton's positional names: INPUT__0, OUTPUT__1, ...
_POSITIONAL = re.compile(r"^.+__(\d+)$")
_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "bfloat16": "BF16",
}

_UNBOUNDED = 2**31
_inter_op_lock = threading.Lock()
# (inter-op threads, the model that set them), once a model has sized torch's inter-op pool.
_inter_op_owner: tuple[int, str] | None = None


@dataclass(frozen=True, slots=True)
class _Loaded:
    module: Any
    signature: Signature
    # Dict outputs are picked by key; other outputs by position, in this order of declared names.
    output_order: tuple[str, ...]
    returns_dict: bool


class PyTorchRuntime:
    platform = "pytorch"
    device_kind = "KIND_CPU"

    def __init__(
        self,
        path: Path,
        settings: RuntimeSettings = _DEFAULT_SETTINGS,
        options: PyTorchOptions = _DEFAULT_OPTIONS,
    ) -> None:
        torch = import_torch(path)
        self._torch = torch
        self._label = f"{path.parent.parent.name}/{path.parent.name}"
        self._instances = settings.instances
        self._threads = options.intra_op_threads or max(1, thread_budget() // settings.instances)
        if options.inter_op_threads:
            size_inter_op_pool(torch, options.inter_op_threads, self._label)
        loaded = (
            load_exported(torch, path, settings)
            if path.suffix == ".pt2"
            else load_script(torch, path, settings)
        )
        self._module = loaded.module
        self._signature = loaded.signature
        self._inputs = [(spec.name, spec.datatype == "BF16") for spec in loaded.signature.inputs]
        self._output_order = loaded.output_order
        self._returns_dict = loaded.returns_dict
        self._bf16_outputs = {s.name for s in loaded.signature.outputs if s.datatype == "BF16"}

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def instances(self) -> int:
        return self._instances

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        args = [_tensor(torch, inputs[name], bf16) for name, bf16 in self._inputs]
        try:
            with torch.inference_mode():
                result = self._module(*args)
        except Exception as exc:
            raise forward_failed(self._label, exc) from None
        outputs = self._outputs(result)
        rows = args[0].shape[0] if self._signature.max_batch_size > 0 and args else None
        return check_outputs(outputs, self._signature, rows, self._label)

    def _outputs(self, result: Any) -> dict[str, np.ndarray]:
        torch = self._torch
        names = self._output_order
        if self._returns_dict or isinstance(result, dict):
            if not isinstance(result, dict) or set(result) != set(names):
                got = sorted(map(str, result)) if isinstance(result, dict) else type(result).__name__
                raise ExecutionError(f"model {self._label}: forward returned {got}; expected {sorted(names)}")
            values = [result[name] for name in names]
        elif isinstance(result, tuple | list):
            values = list(result)
        else:
            values = [result]
        if len(values) != len(names):
            raise ExecutionError(
                f"model {self._label}: forward returned {len(values)} values; config.yaml declares "
                f"{len(names)} outputs ({', '.join(names)})"
            )
        arrays = {}
        for name, value in zip(names, values, strict=True):
            if not isinstance(value, torch.Tensor):
                raise ExecutionError(
                    f"model {self._label}: output '{name}' is {type(value).__name__}, not a tensor"
                )
            arrays[name] = _array(torch, value, name in self._bf16_outputs)
        return arrays

    def close(self) -> None:
        self._module = None


def import_torch(path: Path) -> Any:
    """torch, or a one-line ModelLoadError naming the extra to install."""
    try:
        import torch
    except ImportError:
        raise ModelLoadError(f"{path}: serving PyTorch models needs torch: {INSTALL_HINT}") from None
    return torch


def size_inter_op_pool(torch: Any, threads: int, label: str) -> None:
    """Size torch's process-wide inter-op pool once; a later model asking another size is logged."""
    global _inter_op_owner
    with _inter_op_lock:
        if _inter_op_owner is None:
            try:
                torch.set_num_interop_threads(threads)
            except RuntimeError:  # the pool already started (torch.jit.fork ran before)
                log.warning(
                    "model %s: pytorch.inter_op_threads %d ignored: torch's inter-op pool already has "
                    "%d threads (it is sized once per process)",
                    label,
                    threads,
                    torch.get_num_interop_threads(),
                )
                return
            _inter_op_owner = (threads, label)
        elif _inter_op_owner[0] != threads:
            log.warning(
                "model %s: pytorch.inter_op_threads %d ignored: model %s already sized torch's "
                "process-wide inter-op pool to %d threads",
                label,
                threads,
                _inter_op_owner[1],
                _inter_op_owner[0],
            )


def forward_failed(label: str, exc: Exception) -> InferdError:
    """The client gets the exception's type and last message line (TorchScript errors carry the
    model's code in their message); the whole traceback is logged under an error id."""
    if isinstance(exc, InferdError):
        return exc
    error_id = uuid.uuid4().hex[:12]
    log.error("model %s: forward raised (error id %s)", label, error_id, exc_info=exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = lines[-1][:500] if lines else ""
    described = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return ExecutionError(f"model {label}: forward raised {described} (error id {error_id})", error_id)


def _tensor(torch: Any, array: np.ndarray, bf16: bool) -> Any:
    if not array.flags.writeable:  # a view of the request: torch.from_numpy wants a writable array
        array = array.copy()
    tensor = torch.from_numpy(array)
    return tensor.view(torch.bfloat16) if bf16 else tensor  # BF16 travels as uint16 words


def _array(torch: Any, tensor: Any, bf16: bool) -> np.ndarray:
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.dtype == torch.bfloat16:
        array: np.ndarray = tensor.view(torch.int16).numpy().view(np.uint16)
        return array
    result: np.ndarray = tensor.numpy()
    return result


def datatype_of(torch_dtype: Any, what: str, path: Path) -> str:
    name = str(torch_dtype).removeprefix("torch.")
    try:
        return _DATATYPES[name]
    except KeyError:
        raise ModelLoadError(f"{path}: {what} has dtype {name}, which inferd cannot serve") from None


# --- TorchScript -------------------------------------------------------------------------------


def load_script(torch: Any, path: Path, settings: RuntimeSettings) -> _Loaded:
    """A TorchScript module: its signature comes from config.yaml (TorchScript types carry no shapes)."""
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{path}: torch.jit.load cannot load it: {_first_line(exc)}") from None
    module.eval()
    schema = module.forward.schema
    arguments = list(schema.arguments)[1:]  # after self
    max_batch_size = settings.max_batch_size or 0
    for kind, declared in (("inputs", settings.inputs), ("outputs", settings.outputs)):
        if not declared:
            raise ModelLoadError(
                f"{path}: a TorchScript model declares its {kind} in config.yaml (name, datatype, dims "
                "each; see docs/model-repository.md#pytorch-models)"
            )
    inputs = tuple(_declared(o, "input", path) for o in settings.inputs)
    outputs = tuple(_declared(o, "output", path) for o in settings.outputs)
    required = sum(1 for a in arguments if a.default_value is None)
    if not required <= len(inputs) <= len(arguments):
        names = ", ".join(a.name for a in arguments)
        raise ModelLoadError(
            f"{path}: config.yaml declares {len(inputs)} inputs; forward takes {len(arguments)} ({names})"
        )
    inputs = _in_forward_order(inputs, [a.name for a in arguments])
    outputs = _positional(outputs)
    returns = schema.returns[0].type if schema.returns else None
    returns_dict = isinstance(returns, torch.DictType)
    count = _returned_count(torch, returns, path)
    if count is not None and count != len(outputs):
        raise ModelLoadError(
            f"{path}: forward returns {count} tensors ({returns}); config.yaml declares {len(outputs)} "
            f"outputs ({', '.join(s.name for s in outputs)})"
        )
    signature = Signature(inputs, outputs, max_batch_size)
    return _Loaded(module, signature, tuple(s.name for s in outputs), returns_dict)


def _returned_count(torch: Any, returns: Any, path: Path) -> int | None:
    """How many tensors forward returns, when its type says (a list or dict says at run time)."""
    tensor = torch.TensorType
    if isinstance(returns, tensor):
        return 1
    if isinstance(returns, torch.TupleType) and all(isinstance(e, tensor) for e in returns.elements()):
        return len(returns.elements())
    if isinstance(returns, torch.ListType) and isinstance(returns.getElementType(), tensor):
        return None
    if isinstance(returns, torch.DictType) and isinstance(returns.getValueType(), tensor):
        return None
    raise ModelLoadError(
        f"{path}: forward returns {returns}; inferd serves a Tensor, a tuple or list of Tensors, or a "
        "Dict[str, Tensor]"
    )


def _declared(override: TensorOverride, kind: str, path: Path) -> TensorSpec:
    if override.datatype is None or override.dims is None:
        raise ModelLoadError(f"{path}: config.yaml's {kind} '{override.name}' needs datatype and dims")
    if override.datatype == "BYTES":
        raise ModelLoadError(f"{path}: {kind} '{override.name}' is BYTES; torch tensors hold numbers")
    return TensorSpec(override.name, override.datatype, override.dims)


def _in_forward_order(specs: tuple[TensorSpec, ...], arguments: list[str]) -> tuple[TensorSpec, ...]:
    """Inputs named after forward's arguments go in that order; otherwise as _positional says."""
    by_name = {spec.name: spec for spec in specs}
    if set(by_name) == set(arguments[: len(specs)]):
        return tuple(by_name[name] for name in arguments[: len(specs)])
    return _positional(specs)


def _positional(specs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Triton's ``NAME__<index>`` names order tensors by index; other names keep config.yaml's order."""
    indices = [_POSITIONAL.match(spec.name) for spec in specs]
    if all(indices) and sorted(int(m.group(1)) for m in indices if m) == list(range(len(specs))):
        return tuple(sorted(specs, key=lambda spec: int(_POSITIONAL.match(spec.name).group(1))))  # type: ignore[union-attr]
    return specs


# --- torch.export --------------------------------------------------------------------------------


def load_exported(torch: Any, path: Path, settings: RuntimeSettings) -> _Loaded:
    """A torch.export program: its example inputs and outputs give names, dtypes and shapes (symbolic
    dimensions are -1); config.yaml may rename them in order and narrow them."""
    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as exc:
        raise ModelLoadError(f"{path}: torch.export.load cannot load it: {_first_line(exc)}") from None
    spec = program.call_spec
    args_spec, kwargs_spec = spec.in_spec.children()
    if kwargs_spec.num_leaves or not all(child.is_leaf() for child in args_spec.children()):
        raise ModelLoadError(f"{path}: inferd passes tensors positionally; this program takes {spec.in_spec}")
    nodes = {node.name: node for node in program.graph.nodes}
    input_names = list(program.graph_signature.user_inputs)
    output_nodes = [
        nodes.get(name) if isinstance(name, str) else None for name in program.graph_signature.user_outputs
    ]
    out_spec = spec.out_spec
    returns_dict = out_spec.type is dict
    if out_spec.is_leaf():
        output_names = ["OUTPUT__0"]
    elif out_spec.type in (tuple, list, dict) and all(c.is_leaf() for c in out_spec.children()):
        output_names = (
            [str(k) for k in out_spec.context]
            if returns_dict
            else [f"OUTPUT__{i}" for i in range(out_spec.num_leaves)]
        )
    else:
        raise ModelLoadError(
            f"{path}: forward returns {out_spec}; inferd serves a tensor, a tuple or list of tensors, "
            "or a dict of them"
        )
    values = [nodes[name].meta.get("val") for name in input_names] + [
        node.meta.get("val") if node is not None else None for node in output_nodes
    ]
    if not all(isinstance(v, torch.Tensor) for v in values):
        raise ModelLoadError(f"{path}: every input and output of the program must be a tensor")
    symbolic = [not isinstance(v.shape[0], int) if v.dim() else False for v in values]
    batchable = all(symbolic)
    max_batch_size = settings.max_batch_size
    if max_batch_size is None:
        max_batch_size = min(DEFAULT_MAX_BATCH_SIZE, _batch_limit(program, values[0])) if batchable else 0
    elif max_batch_size > 0 and not batchable:
        raise ModelLoadError(
            f"{path}: max_batch_size is {max_batch_size} but not every input and output of the program "
            "has a dynamic first dimension (export it with dynamic_shapes); set max_batch_size: 0"
        )
    elif max_batch_size > _batch_limit(program, values[0]):
        raise ModelLoadError(
            f"{path}: max_batch_size {max_batch_size} exceeds the program's batch range (at most "
            f"{_batch_limit(program, values[0])} rows)"
        )

    def specs(
        kind: str, names: list[str], found: list[Any], overrides: tuple[TensorOverride, ...]
    ) -> tuple[TensorSpec, ...]:
        inferred = []
        for name, value in zip(names, found, strict=True):
            dims = tuple(d if isinstance(d, int) else -1 for d in value.shape)
            dims = dims[1:] if max_batch_size > 0 else dims
            inferred.append(TensorSpec(name, datatype_of(value.dtype, f"{kind} '{name}'", path), dims))
        if not overrides:
            return tuple(inferred)
        if len(overrides) != len(inferred):
            raise ModelLoadError(
                f"{path}: config.yaml declares {len(overrides)} {kind}s; the program has {len(inferred)} "
                f"({', '.join(s.name for s in inferred)})"
            )
        return tuple(_renamed(s, o, kind, path) for s, o in zip(inferred, overrides, strict=True))

    count = len(input_names)
    inputs = specs("input", input_names, values[:count], settings.inputs)
    outputs = specs("output", output_names, values[count:], settings.outputs)
    signature = Signature(inputs, outputs, max_batch_size)
    return _Loaded(module, signature, tuple(s.name for s in outputs), returns_dict)


def _batch_limit(program: Any, example: Any) -> int:
    """The most rows the program's first input accepts: its batch symbol's upper bound."""
    size = example.shape[0]
    bound = program.range_constraints.get(size.node.expr) if hasattr(size, "node") else None
    try:
        return int(bound.upper) if bound is not None else _UNBOUNDED
    except (TypeError, ValueError, OverflowError):  # sympy's infinity
        return _UNBOUNDED


def _renamed(spec: TensorSpec, override: TensorOverride, kind: str, path: Path) -> TensorSpec:
    """config.yaml's name for the program's tensor in the same position; its datatype must agree and
    its dims may narrow -1 to a size."""
    if override.datatype is not None and override.datatype != spec.datatype:
        raise ModelLoadError(
            f"{path}: config.yaml says {kind} '{override.name}' is {override.datatype}; the program's "
            f"{kind} in that position ('{spec.name}') is {spec.datatype}"
        )
    dims = spec.dims
    if override.dims is not None:
        fits = len(override.dims) == len(dims) and all(
            d in (-1, o) for d, o in zip(dims, override.dims, strict=True)
        )
        if not fits:
            raise ModelLoadError(
                f"{path}: config.yaml dims {list(override.dims)} for {kind} '{override.name}' do not fit the "
                f"program's {list(dims)} (batch dimension excluded)"
            )
        dims = override.dims
    return TensorSpec(override.name, spec.datatype, dims)


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
