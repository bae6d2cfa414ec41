"""The data an accuracy claim rests on: an npz of input arrays or a JSONL file of V2 requests.

Samples are held as one array per input whose axis 0 stacks rows: for a batching model the rows of
every request concatenated, for a model without a batch dimension one request per row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferd.datatypes import DATATYPES, numpy_dtype

# A sample file is read whole: past these it is refused with a message, not read into memory.
MAX_SAMPLE_BYTES = 1 << 30
MAX_JSONL_LINES = 100_000


class SampleError(ValueError):
    """A sample file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Samples:
    arrays: dict[str, np.ndarray]
    # Where they came from (a path, or "traffic from URL") and in which form (npz, jsonl, traffic).
    origin: str
    kind: str

    @property
    def rows(self) -> int:
        return min(len(a) for a in self.arrays.values()) if self.arrays else 0

    def take(self, count: int) -> Samples:
        return Samples({n: a[:count] for n, a in self.arrays.items()}, self.origin, self.kind)


def load_samples(path: Path, batched: bool) -> Samples:
    """Read ``path`` (``.npz``, or anything else as JSONL of V2 requests)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SampleError(f"{path}: cannot read: {exc.strerror}") from None
    if size > MAX_SAMPLE_BYTES:
        raise SampleError(f"{path}: {size} bytes is more than the {MAX_SAMPLE_BYTES} a sample file may hold")
    if path.suffix == ".npz":
        samples = Samples(_npz(path), str(path), "npz")
    else:
        samples = Samples(_jsonl(path, batched), str(path), "jsonl")
    if not samples.arrays or samples.rows == 0:
        raise SampleError(f"{path}: no samples in it")
    lengths = {len(a) for a in samples.arrays.values()}
    if len(lengths) > 1:
        raise SampleError(f"{path}: inputs hold different numbers of rows ({sorted(lengths)})")
    return samples


def _npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: np.asarray(archive[name]) for name in archive.files}
    except (OSError, ValueError) as exc:
        raise SampleError(f"{path}: not a readable npz archive: {exc}") from None
    for name, array in arrays.items():
        if array.ndim == 0:
            raise SampleError(f"{path}: '{name}' is a scalar; axis 0 must stack the samples")
    return arrays


def _jsonl(path: Path, batched: bool) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if number > MAX_JSONL_LINES:
                raise SampleError(f"{path}: more than {MAX_JSONL_LINES} requests")
            if not line.strip():
                continue
            for name, array in _request(path, number, line).items():
                parts.setdefault(name, []).append(array if batched else array[np.newaxis])
    try:
        return {name: np.concatenate(arrays) for name, arrays in parts.items()}
    except ValueError as exc:
        raise SampleError(f"{path}: requests do not stack: {exc}") from None


def _request(path: Path, number: int, line: bytes) -> dict[str, np.ndarray]:
    where = f"{path}:{number}"
    try:
        document = json.loads(line)
    except ValueError as exc:
        raise SampleError(f"{where}: not JSON: {exc}") from None
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise SampleError(f"{where}: a V2 request needs a non-empty 'inputs' list")
    arrays: dict[str, np.ndarray] = {}
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise SampleError(f"{where}: each input must be an object")
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        if not isinstance(name, str) or not isinstance(shape, list) or datatype not in DATATYPES:
            raise SampleError(f"{where}: each input needs a name, a shape and a V2 datatype")
        if datatype in ("BYTES", "BF16"):
            raise SampleError(f"{where}: input '{name}' is {datatype}: only numeric samples are supported")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SampleError(f"{where}: input '{name}': the shape must be non-negative integers")
        try:
            array = np.asarray(tensor.get("data"), dtype=numpy_dtype(datatype)).reshape(shape)
        except (ValueError, TypeError) as exc:
            raise SampleError(f"{where}: input '{name}': data does not fit shape {shape}: {exc}") from None
        arrays[name] = array
    return arrays
