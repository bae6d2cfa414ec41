"""Cache keys: a hash of everything that decides a deterministic model's answer, and nothing else."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson

# Request parameters that change how or when a response travels, never what it holds.
IGNORED_PARAMETERS = frozenset({"binary_data_output", "timeout", "priority", "binary_data_size"})
_PARTITION_TAG = b"caller\x00"


def response_key(
    model: str,
    version: str,
    inputs: Mapping[str, tuple[str, np.ndarray]],
    outputs: Iterable[str],
    parameters: Mapping[str, Any],
    partition: str | None = None,
) -> bytes:
    """``inputs`` maps each input name to (datatype, array); the request id is never part of a key.
    ``partition`` (an API key id) confines the entry to callers presenting that key."""
    # SHA-256: collision resistant (a shared cache must not be poisonable by crafted inputs), and
    # hardware-accelerated (SHA-NI) on current x86 and ARM CPUs, so it beat BLAKE2b here.
    digest = hashlib.sha256()
    if partition is not None:
        # Tagged and first: no unpartitioned key can hash the same bytes (it starts with a length
        # prefix, which these bytes would make petabytes long), and keys without one are unchanged.
        digest.update(_PARTITION_TAG)
        _text(digest, partition)
    _text(digest, model)
    _text(digest, version)
    for name in sorted(inputs):
        datatype, array = inputs[name]
        _text(digest, name)
        _text(digest, datatype)
        digest.update(np.array(array.shape, dtype="<i8").tobytes())
        _data(digest, array)
    for name in outputs:
        _text(digest, name)
    relevant = {k: v for k, v in parameters.items() if k not in IGNORED_PARAMETERS}
    if relevant:
        try:
            digest.update(orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS))
        except TypeError:  # a value orjson cannot serialize: its repr still tells values apart
            digest.update(repr(sorted(relevant.items())).encode())
    return digest.digest()


def _text(digest: hashlib._Hash, text: str) -> None:
    # Length-prefixed, so ("ab", "c") and ("a", "bc") never hash alike.
    raw = text.encode("utf-8", "surrogatepass")
    digest.update(len(raw).to_bytes(8, "little"))
    digest.update(raw)


def _data(digest: hashlib._Hash, array: np.ndarray) -> None:
    if array.dtype.kind == "O":
        # BYTES: lengths then contents, both gathered in C (map/join), so no Python loop per element.
        flat = array.reshape(-1).tolist()
        digest.update(np.fromiter(map(len, flat), dtype="<i8", count=len(flat)).tobytes())
        digest.update(b"".join(flat))
        return
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    digest.update(np.ascontiguousarray(array).data)
