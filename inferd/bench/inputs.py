"""The tensors each benchmark request carries: random ones shaped from model metadata, or a file's.

Every request of a run sends the same tensors: the generator encodes them once, so its cost per
request is independent of the tensor size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inferd.bench.endpoint import BenchError
from inferd.datatypes import DATATYPES, numpy_dtype


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    datatype: str
    data: npt.NDArray[Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


def parse_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """perf_analyzer's ``--shape NAME:D1,D2,...`` (without the batch dim for a batching model)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            parsed = tuple(int(d) for d in dims.split(","))
        except ValueError:
            parsed = ()
        if not sep or not name or not parsed or min(parsed) < 0:
            raise BenchError(f"--shape expects NAME:D1,D2,... with non-negative dims, got '{spec}'")
        shapes[name] = parsed
    return shapes


def random_inputs(
    metadata: Mapping[str, Any],
    batch_size: int,
    shapes: Mapping[str, tuple[int, ...]],
    seed: int = 0,
    zeros: bool = False,
) -> list[InputTensor]:
    """One tensor per input in ``metadata``: a leading -1 is the batch dim, other -1s need ``shapes``."""
    rng = np.random.default_rng(seed)
    known = {tensor["name"] for tensor in metadata.get("inputs", [])}
    unknown = set(shapes) - known
    if unknown:
        raise BenchError(f"--shape names unknown inputs {sorted(unknown)}; the model has {sorted(known)}")
    tensors = []
    for spec in metadata.get("inputs", []):
        name, datatype = spec["name"], spec["datatype"]
        if datatype not in DATATYPES:
            raise BenchError(f"input '{name}' has datatype '{datatype}', which bench cannot generate")
        shape = _concrete_shape(name, [int(d) for d in spec["shape"]], batch_size, shapes.get(name))
        tensors.append(InputTensor(name, datatype, _fill(rng, datatype, shape, zeros)))
    if not tensors:
        raise BenchError(
            "the server's metadata lists no inputs, so bench cannot make random ones: "
            "give --input-data a V2 request body"
        )
    return tensors


def _concrete_shape(
    name: str, declared: list[int], batch_size: int, override: tuple[int, ...] | None
) -> tuple[int, ...]:
    batched = bool(declared) and declared[0] == -1
    if override is not None:
        if batched and len(override) == len(declared) - 1:
            return (batch_size, *override)
        if len(override) == len(declared):
            return override
        raise BenchError(
            f"--shape for '{name}' has {len(override)} dims; the model declares {declared}"
            + (" (give them without the batch dim)" if batched else "")
        )
    dims = declared[1:] if batched else declared
    if -1 in dims:
        raise BenchError(f"input '{name}' has dynamic dims {declared}: give them with --shape {name}:...")
    return (batch_size, *dims) if batched else tuple(dims)


def _fill(rng: np.random.Generator, datatype: str, shape: tuple[int, ...], zeros: bool) -> npt.NDArray[Any]:
    dtype = numpy_dtype(datatype)
    if datatype == "BYTES":
        words = np.array([b"inferd-bench-" + str(i % 97).encode() for i in range(int(np.prod(shape)))])
        return words.astype(object).reshape(shape)
    if zeros:
        return np.zeros(shape, dtype=dtype)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if datatype.startswith("FP"):
        return rng.standard_normal(size=shape).astype(dtype)
    # Small non-negative integers are valid as indices (token ids, categories) for most models.
    return rng.integers(0, 100, size=shape).astype(dtype)


def load_inputs(path: Path, metadata: Mapping[str, Any]) -> list[InputTensor]:
    """Tensors from ``.npz`` (one array per input name) or ``.json`` (``{name: nested list}`` or a V2
    request body with ``inputs``); datatypes come from the model metadata, or from a V2 body when the
    server's metadata lists no inputs (as MLServer's custom runtimes may)."""
    datatypes = {t["name"]: t["datatype"] for t in metadata.get("inputs", [])}
    arrays: dict[str, Any]
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        else:
            document = json.loads(path.read_text())
            if isinstance(document, dict) and isinstance(document.get("inputs"), list):
                if not datatypes:
                    datatypes = {t["name"]: t["datatype"] for t in document["inputs"]}
                    if not set(datatypes.values()) <= DATATYPES:
                        raise BenchError(f"{path}: unknown datatypes in {sorted(datatypes.values())}")
                arrays = {
                    t["name"]: np.asarray(t["data"]).reshape([int(d) for d in t["shape"]])
                    for t in document["inputs"]
                }
            elif isinstance(document, dict):
                arrays = {name: np.asarray(value) for name, value in document.items()}
            else:
                raise BenchError(f"{path}: expected a JSON object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"cannot read inputs from {path}: {exc}") from None
    if not datatypes:
        raise BenchError(
            "the server's metadata lists no inputs: give --input-data a V2 request body "
            '(JSON with "inputs": [{"name", "shape", "datatype", "data"}])'
        )
    missing = set(datatypes) - set(arrays)
    extra = set(arrays) - set(datatypes)
    if missing or extra:
        raise BenchError(
            f"{path} must hold exactly the model's inputs {sorted(datatypes)}; "
            f"missing {sorted(missing)}, unknown {sorted(extra)}"
        )
    tensors = []
    for name, datatype in datatypes.items():
        array = arrays[name]
        if datatype == "BYTES":
            array = np.vectorize(lambda v: v if isinstance(v, bytes) else str(v).encode(), otypes=[object])(
                array
            )
        else:
            array = np.ascontiguousarray(array, dtype=numpy_dtype(datatype))
        tensors.append(InputTensor(name, datatype, array))
    return tensors


def batch_rows(tensors: Sequence[InputTensor], metadata: Mapping[str, Any]) -> int:
    """Inferences per request: the batch dim of the first input for a batching model, else 1."""
    declared = (metadata.get("inputs") or [{}])[0].get("shape", [])
    if declared and int(declared[0]) == -1 and tensors and tensors[0].data.ndim:
        return int(tensors[0].data.shape[0])
    return 1
