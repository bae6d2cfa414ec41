"""gRPC ModelInfer messages <-> core types. Inputs may be raw or typed; outputs are always raw,
because tritonclient.grpc reads only ``raw_output_contents``.

Requests are parsed as inferd's light ModelInferRequest (proto/inferd_light.proto), which keeps each
input's typed contents as bytes: no element is parsed before the model's admission has checked the
declared shapes, and then no more elements than declared (inferd/protocol/wire.py)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from google.protobuf.message import DecodeError

from inferd.datatypes import numpy_dtype
from inferd.errors import InferdError, InvalidRequest
from inferd.protocol import wire
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import inferd_light_pb2 as light
from inferd.protocol.declared import admit_inputs
from inferd.protocol.outputs import class_count
from inferd.protocol.shm_tensors import check_output, output_parameters, read_input, write_output
from inferd.protocol.tensors import check_rank, check_shape, from_raw, to_raw
from inferd.sharedmem import SharedMemoryAccess, output_ref, parameter_ref
from inferd.types import Admission, InferRequest, InferResponse, RequestedOutput, SharedMemoryRef, Tensor

# Which InferTensorContents field carries each datatype when a client sends typed contents.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


_FIELD_NUMBERS = pb.InferTensorContents.DESCRIPTOR.fields_by_name
# The wire type of one element of each scalar contents field, when not packed.
_ELEMENT_KIND = {
    "bool_contents": wire.VARINT,
    "int_contents": wire.VARINT,
    "int64_contents": wire.VARINT,
    "uint_contents": wire.VARINT,
    "uint64_contents": wire.VARINT,
    "fp32_contents": wire.I32,
    "fp64_contents": wire.I64,
}


def parse_infer_request(data: bytes) -> light.ModelInferRequest:
    """Parse a serialized ModelInferRequest (as the gRPC server receives it) into the light message.
    A large one is first checked for the count of its fields and its shapes' ranks (``wire.
    check_request``), so that the parse's cost is bounded whatever its entries. Raises InvalidRequest
    for a refused request, DecodeError for one that is not protobuf."""
    if len(data) > wire.CHECK_ABOVE_BYTES:
        wire.check_request(data)
    return light.ModelInferRequest.FromString(data)


def decode_infer_request(
    message: light.ModelInferRequest,
    admission: Admission | None = None,
    shm: SharedMemoryAccess | None = None,
) -> InferRequest:
    """Decode a parsed (light) ModelInferRequest. Given the model's ``admission``, the inputs' names,
    datatypes and shapes (and the requested outputs) are checked before any tensor data is read;
    typed contents are then read no further than the declared element count. ``shm``: the
    registered shared memory regions this caller may name (None: none registered)."""
    try:
        raw_contents = message.raw_input_contents
        if not message.inputs:
            raise InvalidRequest("the request has no inputs")
        heads, admitted = admit_inputs(admission, message.inputs, _declare_input)
        if raw_contents:
            # tritonclient sends raw contents for the inputs not in shared memory only, in order.
            carried = sum(head.shm is None for head in heads)
            if len(raw_contents) != carried:
                raise InvalidRequest(
                    f"raw_input_contents has {len(raw_contents)} entries for {carried} inputs sent inline"
                )
        outputs = _requested_outputs(message, admission, shm)
        inputs = []
        next_raw = 0
        for head in heads:
            tensor = head.message
            if head.shm is not None:
                if len(tensor.contents):
                    raise InvalidRequest(
                        f"input '{tensor.name}' names a shared memory region and also carries data"
                    )
                data = read_input(shm, head.shm, tensor.name, tensor.datatype, head.shape)
            elif raw_contents:
                if len(tensor.contents):
                    raise InvalidRequest(
                        f"input '{tensor.name}' has both typed contents and raw_input_contents"
                    )
                data = from_raw(tensor.name, tensor.datatype, head.shape, raw_contents[next_raw])
                next_raw += 1
            else:
                data = _from_contents(tensor, head.shape)
            inputs.append(Tensor(tensor.name, tensor.datatype, data, head.parameters))
    except InferdError as exc:
        exc.request_id = message.id or None  # the access log and the span name the refused request
        raise
    return InferRequest(
        model=message.model_name,
        version=message.model_version or None,
        inputs=inputs,
        outputs=outputs,
        id=message.id or None,
        parameters={key: parameter_value(value) for key, value in message.parameters.items()},
        admitted=admitted,
    )


def _requested_outputs(
    message: light.ModelInferRequest, admission: Admission | None, shm: SharedMemoryAccess | None
) -> list[RequestedOutput] | None:
    if not message.outputs:
        return None
    if admission is not None:
        admission.check_outputs(o.name for o in message.outputs)
    outputs = []
    for output in message.outputs:
        if not output.parameters:
            outputs.append(RequestedOutput(output.name))
            continue
        parameters = {key: parameter_value(value) for key, value in output.parameters.items()}
        ref = output_ref(parameters, output.name)
        if ref is not None:  # before the model runs; written after it
            check_output(shm, ref, output.name)
        outputs.append(RequestedOutput(output.name, None, ref, class_count(parameters, output.name)))
    return outputs


class _Input(NamedTuple):  # a NamedTuple: built per input per request, the cheapest record
    """One input's header, checked, with its message (a DeclaredInput)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    message: light.ModelInferRequest.InferInputTensor
    parameters: dict[str, Any]
    shm: SharedMemoryRef | None


def _declare_input(tensor: light.ModelInferRequest.InferInputTensor) -> _Input:
    check_rank(tensor.name, len(tensor.shape))  # before the dims are copied out of the message
    shape = check_shape(tensor.name, list(tensor.shape))
    numpy_dtype(tensor.datatype)  # rejects unknown datatypes with a clear message
    if not tensor.parameters:
        return _Input(tensor.name, tensor.datatype, shape, tensor, {}, None)
    parameters = {key: parameter_value(value) for key, value in tensor.parameters.items()}
    ref = parameter_ref(parameters, f"input '{tensor.name}'")
    return _Input(tensor.name, tensor.datatype, shape, tensor, parameters, ref)


def _from_contents(tensor: light.ModelInferRequest.InferInputTensor, shape: tuple[int, ...]) -> np.ndarray:
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise InvalidRequest(
            f"input '{tensor.name}': {tensor.datatype} data must be sent in raw_input_contents"
        )
    # Several occurrences of a message field merge; their concatenation is the merged message.
    blob = b"".join(tensor.contents)
    count = math.prod(shape)
    number = _FIELD_NUMBERS[field].number
    if tensor.datatype == "BYTES":
        # Walked first: the list is bounded by the blob, while an unchecked shape (a lazy model's
        # first request) could declare billions of elements.
        elements = wire.bytes_elements(tensor.name, blob, number, count)
        array = np.empty(len(elements), dtype=object)
        array[:] = elements
        return array.reshape(shape)
    wire.count_elements(tensor.name, blob, field, number, _ELEMENT_KIND[field], count)
    try:  # the count is the declared one: the parse allocates no more than the shape says
        values = getattr(pb.InferTensorContents.FromString(blob), field)
    except DecodeError:
        raise InvalidRequest(f"input '{tensor.name}': its contents are not valid protobuf") from None
    dtype = numpy_dtype(tensor.datatype)
    wide = np.array(values)
    if dtype.kind in "iu" and wide.size:
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidRequest(f"input '{tensor.name}': a value is out of range for {tensor.datatype}")
    return wide.astype(dtype).reshape(shape)


def encode_infer_response(
    response: InferResponse, request: InferRequest | None = None, shm: SharedMemoryAccess | None = None
) -> pb.ModelInferResponse:
    """The response message; outputs that name a shared memory region are written there (``shm``)
    and carry its parameters, with empty raw contents so that the others keep their index."""
    message = pb.ModelInferResponse(
        model_name=response.model, model_version=response.version, id=response.id or ""
    )
    for key, value in response.parameters.items():  # a Python model's (inferd.Response)
        set_parameter(message.parameters[key], value)
    regions = _output_regions(request)
    for tensor in response.outputs:
        entry = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        ref = regions.get(tensor.name) if regions else None
        if ref is None:
            message.raw_output_contents.append(to_raw(tensor.datatype, tensor.data))
            continue
        written = write_output(shm, ref, tensor.name, tensor.datatype, tensor.data)
        for key, value in output_parameters(ref, written).items():
            if isinstance(value, str):
                entry.parameters[key].string_param = value
            else:
                assert isinstance(value, int)
                entry.parameters[key].int64_param = value
        message.raw_output_contents.append(b"")
    return message


def set_parameter(parameter: pb.InferParameter, value: object) -> None:
    """``value`` (bool, int, float or str) in the field of its kind."""
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def _output_regions(request: InferRequest | None) -> dict[str, SharedMemoryRef] | None:
    if request is None or not request.outputs:
        return None
    return {o.name: o.shm for o in request.outputs if o.shm is not None} or None


def parameter_value(parameter: pb.InferParameter | light.InferParameter) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None
