"""V2 datatype names and their numpy dtypes, shared by every layer that touches tensors."""

from __future__ import annotations

from typing import Final

import numpy as np

from inferd.errors import InvalidRequest

# BF16 has no numpy dtype: its elements travel as raw 16-bit words and are kept as uint16.
# BYTES elements are Python ``bytes`` objects in an object array.
_NUMPY_BY_DATATYPE: Final[dict[str, np.dtype]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(np.uint16),
    "BYTES": np.dtype(object),
}

DATATYPES: Final[frozenset[str]] = frozenset(_NUMPY_BY_DATATYPE)

# ONNX TensorProto element type numbers -> V2 names (ONNX's STRING is V2 BYTES).
ONNX_ELEM_TYPE_TO_DATATYPE: Final[dict[int, str]] = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}

# Triton's model-config enum names, used by the model configuration endpoint.
TRITON_CONFIG_TYPE: Final[dict[str, str]] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
    "BF16": "TYPE_BF16",
}


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype that holds elements of a V2 ``datatype``; rejects unknown names."""
    try:
        return _NUMPY_BY_DATATYPE[datatype]
    except KeyError:
        raise InvalidRequest(
            f"unknown datatype '{datatype}'; expected one of {', '.join(sorted(DATATYPES))}"
        ) from None


def element_size(datatype: str) -> int:
    """Bytes per element in the binary wire form; 0 for BYTES (variable length)."""
    return 0 if datatype == "BYTES" else numpy_dtype(datatype).itemsize
