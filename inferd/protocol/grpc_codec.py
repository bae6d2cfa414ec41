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
from inferd.protocol.tensors import check_rank, check_shape, from_raw, to_raw
from inferd.types import Admission, InferRequest, InferResponse, RequestedOutput, Tensor

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
    message: light.ModelInferRequest, admission: Admission | None = None
) -> InferRequest:
    """Decode a parsed (light) ModelInferRequest. Given the model's ``admission``, the inputs' names,
    datatypes and shapes (and the requested outputs) are checked before any tensor data is read;
    typed contents are then read no further than the declared element count."""
    try:
        raw_contents = message.raw_input_contents
        if raw_contents and len(raw_contents) != len(message.inputs):
            raise InvalidRequest(
                f"raw_input_contents has {len(raw_contents)} entries for {len(message.inputs)} inputs"
            )
        if not message.inputs:
            raise InvalidRequest("the request has no inputs")
        heads, admitted = admit_inputs(admission, message.inputs, _declare_input)
        if admission is not None and message.outputs:
            admission.check_outputs(o.name for o in message.outputs)
        inputs = []
        for index, head in enumerate(heads):
            tensor = head.message
            if raw_contents:
                if len(tensor.contents):
                    raise InvalidRequest(
                        f"input '{tensor.name}' has both typed contents and raw_input_contents"
                    )
                data = from_raw(tensor.name, tensor.datatype, head.shape, raw_contents[index])
            else:
                data = _from_contents(tensor, head.shape)
            inputs.append(Tensor(tensor.name, tensor.datatype, data))
    except InferdError as exc:
        exc.request_id = message.id or None  # the access log and the span name the refused request
        raise
    outputs = [RequestedOutput(o.name) for o in message.outputs] or None
    return InferRequest(
        model=message.model_name,
        version=message.model_version or None,
        inputs=inputs,
        outputs=outputs,
        id=message.id or None,
        parameters={key: parameter_value(value) for key, value in message.parameters.items()},
        admitted=admitted,
    )


class _Input(NamedTuple):  # a NamedTuple: built per input per request, the cheapest record
    """One input's header, checked, with its message (a DeclaredInput)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    message: light.ModelInferRequest.InferInputTensor


def _declare_input(tensor: light.ModelInferRequest.InferInputTensor) -> _Input:
    check_rank(tensor.name, len(tensor.shape))  # before the dims are copied out of the message
    shape = check_shape(tensor.name, list(tensor.shape))
    numpy_dtype(tensor.datatype)  # rejects unknown datatypes with a clear message
    return _Input(tensor.name, tensor.datatype, shape, tensor)


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


def encode_infer_response(response: InferResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model, model_version=response.version, id=response.id or ""
    )
    for tensor in response.outputs:
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_output_contents.append(to_raw(tensor.datatype, tensor.data))
    return message


def parameter_value(parameter: pb.InferParameter | light.InferParameter) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None
