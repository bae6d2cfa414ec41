"""V2 REST bodies (JSON, plus the binary tensor data extension) <-> core types, with orjson."""

from __future__ import annotations

import math
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import orjson

from inferd.datatypes import DATATYPES, numpy_dtype
from inferd.errors import InferdError, InvalidRequest
from inferd.protocol.declared import admit_inputs, kept
from inferd.protocol.outputs import class_count
from inferd.protocol.shm_tensors import check_output, read_input, write_output
from inferd.protocol.tensors import check_shape, from_raw, to_raw
from inferd.sharedmem import SharedMemoryAccess, output_ref, parameter_ref
from inferd.types import Admission, InferRequest, InferResponse, RequestedOutput, SharedMemoryRef, Tensor

# Which JSON element kinds (numpy's inferred dtype.kind) each target kind accepts without losing meaning.
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
# The Python types (as orjson builds them) each target kind accepts: a bool is never a number here.
_JSON_TYPES: dict[str, set[type]] = {"b": {bool}, "i": {int}, "u": {int}, "f": {int, float}}


def decode_request(
    body: bytes,
    json_length: int | None,
    model: str,
    version: str | None,
    admission: Admission | None = None,
    shm: SharedMemoryAccess | None = None,
) -> InferRequest:
    """Parse an infer request; ``json_length`` is the Inference-Header-Content-Length, if sent;
    ``shm``: the registered shared memory regions this caller may name (None: none registered).

    The inputs' and outputs' headers are read first and, given the model's ``admission``, checked
    against it before any tensor data is converted: a refused request costs the JSON parse (bounded
    by the body limit), never a walk over its elements."""
    if json_length is None:
        header, binary = body, memoryview(b"")
    else:
        if json_length < 0 or json_length > len(body):
            raise InvalidRequest(
                f"Inference-Header-Content-Length is {json_length} but the body has only {len(body)} bytes"
            )
        header, binary = body[:json_length], memoryview(body)[json_length:]
    doc = _load_object(header)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest("'id' must be a string")
    try:
        raw_inputs = doc.get("inputs")
        if not isinstance(raw_inputs, list) or not raw_inputs:
            raise InvalidRequest("the request must have a non-empty 'inputs' list")
        heads, admitted = admit_inputs(admission, raw_inputs, _declare_input)
        outputs = _requested_outputs(doc.get("outputs"), admission, shm)
        inputs = []
        offset = 0
        for head in heads:
            tensor, used = _decode_input(head, binary, offset, shm)
            inputs.append(tensor)
            offset += used
        if offset != len(binary):
            raise InvalidRequest(
                f"the binary section has {len(binary)} bytes but the inputs' binary_data_size "
                f"add up to {offset}"
            )
        parameters = _parameters(doc.get("parameters"), "request")
    except InferdError as exc:
        exc.request_id = request_id  # the access log and the span name the refused request
        raise
    return InferRequest(
        model=model,
        version=version,
        inputs=inputs,
        outputs=outputs,
        id=request_id,
        parameters=parameters,
        admitted=admitted,
    )


def _load_object(header: bytes | memoryview) -> dict[str, Any]:
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON in the request body: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(doc).__name__}")
    return doc


class _Input(NamedTuple):  # a NamedTuple: built per input per request, the cheapest record
    """One entry of 'inputs' with its header checked and its data not yet read (a DeclaredInput)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    parameters: dict[str, Any]
    binary_size: int | None
    raw: dict[str, Any]
    shm: SharedMemoryRef | None


def _declare_input(raw: Any) -> _Input:
    if not isinstance(raw, dict):
        raise InvalidRequest("each entry of 'inputs' must be an object with name, datatype, shape and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("every input needs a 'name' string")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidRequest(
            f"input '{name}': unknown datatype {datatype!r}; expected one of {sorted(DATATYPES)}"
        )
    shape = check_shape(name, raw.get("shape"))
    parameters = _parameters(raw.get("parameters"), f"input '{name}'")
    size = parameters.pop("binary_data_size", None)
    shm = parameter_ref(parameters, f"input '{name}'") if parameters else None
    if shm is not None:
        if size is not None or "data" in raw:
            raise InvalidRequest(f"input '{name}' names a shared memory region and also carries data")
    elif size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidRequest(f"input '{name}': binary_data_size must be a non-negative integer")
        if "data" in raw:
            raise InvalidRequest(f"input '{name}' has both 'data' and binary_data_size")
    elif "data" not in raw:
        raise InvalidRequest(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
    return _Input(name, datatype, shape, parameters, size, raw, shm)


def _decode_input(
    head: _Input, binary: memoryview, offset: int, shm: SharedMemoryAccess | None
) -> tuple[Tensor, int]:
    name, datatype, shape, size = head.name, head.datatype, head.shape, head.binary_size
    if head.shm is not None:
        return Tensor(name, datatype, read_input(shm, head.shm, name, datatype, shape), head.parameters), 0
    if size is not None:
        if offset + size > len(binary):
            raise InvalidRequest(
                f"input '{name}': binary_data_size {size} runs past the end of the binary section "
                f"({len(binary) - offset} bytes left)"
            )
        return Tensor(name, datatype, from_raw(name, datatype, shape, binary[offset : offset + size])), size
    return Tensor(name, datatype, _from_json(name, datatype, shape, head.raw["data"]), head.parameters), 0


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    if datatype == "BF16":
        raise InvalidRequest(f"input '{name}': BF16 data can only be sent in binary form")
    flat = _elements(name, shape, data)
    # One pass in C over the element types: it also finds the bools that numpy would silently
    # turn into 1 in a list of numbers, and lists nested deeper than the shape.
    kinds = set(map(type, flat))
    if datatype == "BYTES":
        if not kinds <= {str}:
            raise InvalidRequest(f"input '{name}': BYTES data must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = [e.encode("utf-8") for e in flat]
        return array.reshape(shape)
    dtype = numpy_dtype(datatype)
    if not kinds <= _JSON_TYPES[dtype.kind]:
        if list in kinds:
            raise InvalidRequest(f"input '{name}': data is not a rectangular list of shape {list(shape)}")
        raise InvalidRequest(f"input '{name}': {datatype} data must be {_kind_text(dtype.kind)}")
    if dtype.kind == "f":
        # Only ints and floats here (checked above): convert straight to the target type, without
        # numpy's pass to infer one. JSON has no Infinity, so an infinite element here is a finite
        # number too large for the type.
        try:
            array = np.array(flat, dtype=dtype)
        except OverflowError:  # an int beyond float64
            raise InvalidRequest(f"input '{name}': a value is out of range for {datatype}") from None
        # count_nonzero, not .any(): the same answer without numpy's Python-level wrapper (~1 µs).
        if dtype.itemsize < 8 and np.count_nonzero(np.isinf(array)):
            raise InvalidRequest(f"input '{name}': a value is out of range for {datatype}")
        return array.reshape(shape)
    try:
        array = np.array(flat)
    except (ValueError, TypeError):
        raise InvalidRequest(f"input '{name}': data is not a rectangular list of numbers") from None
    if array.dtype.kind in "fO" and dtype.kind in "iu":
        array = _wide_integers(name, datatype, flat)
    if array.size and array.dtype.kind not in _ACCEPTED_KINDS[dtype.kind]:
        raise InvalidRequest(f"input '{name}': {datatype} data must be {_kind_text(dtype.kind)}")
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidRequest(f"input '{name}': a value is out of range for {datatype}")
    return array.astype(dtype, copy=False).reshape(shape)


def _elements(name: str, shape: tuple[int, ...], data: Any) -> list[Any]:
    """The data's elements in order, flat (as sent, or as nested lists matching ``shape``).

    Lengths are checked against the declared shape before anything is copied: Python work is one
    step per nested list (at most the element count over the last dimension), the rest is in C."""
    count = math.prod(shape)
    top: list[Any] = data if isinstance(data, list) else [data]  # a bare scalar
    if not top or not isinstance(top[0], list):
        if len(top) != count:
            raise InvalidRequest(
                f"input '{name}': shape {list(shape)} needs {count} elements, the data has {len(top)}"
            )
        return top
    rows: list[Any] = [top]
    for depth, dim in enumerate(shape):
        for row in rows:
            if not isinstance(row, list) or len(row) != dim:
                raise InvalidRequest(f"input '{name}': data is not a rectangular list of shape {list(shape)}")
        if depth < len(shape) - 1:
            rows = list(chain.from_iterable(rows))
    return list(chain.from_iterable(rows))


def _wide_integers(name: str, datatype: str, flat: list[Any]) -> np.ndarray:
    # numpy infers float64 or object for integers beyond int64 (UINT64's upper half): convert them
    # to the target type directly (the elements are known to be ints).
    try:
        return np.array(flat, dtype=numpy_dtype(datatype))
    except OverflowError:
        raise InvalidRequest(f"input '{name}': a value is out of range for {datatype}") from None


def _kind_text(kind: str) -> str:
    return {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}[kind]


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: 'parameters' must be an object")
    return dict(raw)


def _requested_outputs(
    raw: Any, admission: Admission | None, shm: SharedMemoryAccess | None
) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidRequest("'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    parsed = map(_requested_output, raw)
    if admission is None:
        outputs.extend(parsed)
    else:
        admission.check_outputs(output.name for output in kept(parsed, outputs))
    for output in outputs:
        if output.shm is not None:  # before the model runs; written after it
            check_output(shm, output.shm, output.name)
    return outputs


def _requested_output(item: Any) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidRequest("each entry of 'outputs' must be an object with a 'name'")
    name = item["name"]
    parameters = _parameters(item.get("parameters"), f"output '{name}'")
    if not parameters:
        return RequestedOutput(name)
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidRequest(f"output '{name}': binary_data must be true or false")
    return RequestedOutput(name, binary, output_ref(parameters, name), class_count(parameters, name))


def encode_response(
    request: InferRequest, response: InferResponse, shm: SharedMemoryAccess | None = None
) -> tuple[bytes, int | None]:
    """Serialize a response; the second value is the JSON header length when a binary section
    follows. Outputs that name a shared memory region are written there (``shm``), not sent."""
    binary_default = request.parameters.get("binary_data_output") is True
    requested = {o.name: o for o in request.outputs} if request.outputs else {}
    docs = []
    chunks = []
    for tensor in response.outputs:
        wanted = requested.get(tensor.name)
        binary = wanted.binary if wanted is not None else None
        if binary is None:
            binary = binary_default
        doc: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if wanted is not None and wanted.shm is not None:
            # Nothing but the name, datatype and shape, as Triton answers: Triton's C++ client (in
            # perf_analyzer) reads any output "parameters" as the binary extension's.
            write_output(shm, wanted.shm, tensor.name, tensor.datatype, tensor.data)
        elif binary:
            raw = to_raw(tensor.datatype, tensor.data)
            doc["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            doc["data"] = _to_json(tensor)
        docs.append(doc)
    body: dict[str, Any] = {"model_name": response.model, "model_version": response.version, "outputs": docs}
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:  # a Python model's response parameters (inferd.Response)
        body["parameters"] = response.parameters
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def _to_json(tensor: Tensor) -> Any:
    if tensor.datatype == "BF16":
        raise InvalidRequest(
            f"output '{tensor.name}' is BF16, which can only be returned in binary form (binary_data: true)"
        )
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        try:
            return [e.decode("utf-8") if isinstance(e, bytes) else str(e) for e in flat]
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"output '{tensor.name}' holds bytes that are not UTF-8; request it with binary_data: true"
            ) from None
    if not flat.flags.c_contiguous or flat.dtype.byteorder == ">":
        flat = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))
    return flat


def encode_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
