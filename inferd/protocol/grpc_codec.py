"""gRPC ModelInfer messages <-> core types. Inputs may be raw or typed; outputs are always raw,
because tritonclient.grpc reads only ``raw_output_contents``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from inferd.datatypes import numpy_dtype
from inferd.errors import InvalidRequest
from inferd.protocol._generated import grpc_service_pb2 as pb
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


def decode_infer_request(message: pb.ModelInferRequest, admission: Admission | None = None) -> InferRequest:
    """Decode a parsed ModelInferRequest. Given the model's ``admission``, the inputs' names,
    datatypes and shapes (and the requested outputs) are checked before any tensor data is read;
    element counts are compared with ``len()`` of the contents before an element is touched."""
    raw_contents = message.raw_input_contents
    if raw_contents and len(raw_contents) != len(message.inputs):
        raise InvalidRequest(
            f"raw_input_contents has {len(raw_contents)} entries for {len(message.inputs)} inputs"
        )
    if not message.inputs:
        raise InvalidRequest("the request has no inputs")
    heads, admitted = admit_inputs(admission, map(_declare_input, message.inputs))
    if admission is not None and message.outputs:
        admission.check_outputs(o.name for o in message.outputs)
    inputs = []
    for index, head in enumerate(heads):
        tensor = head.message
        if raw_contents:
            if tensor.HasField("contents"):
                raise InvalidRequest(f"input '{tensor.name}' has both typed contents and raw_input_contents")
            data = from_raw(tensor.name, tensor.datatype, head.shape, raw_contents[index])
        else:
            data = _from_contents(tensor, head.shape)
        inputs.append(Tensor(tensor.name, tensor.datatype, data))
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
    message: pb.ModelInferRequest.InferInputTensor


def _declare_input(tensor: pb.ModelInferRequest.InferInputTensor) -> _Input:
    check_rank(tensor.name, len(tensor.shape))  # before the dims are copied out of the message
    shape = check_shape(tensor.name, list(tensor.shape))
    numpy_dtype(tensor.datatype)  # rejects unknown datatypes with a clear message
    return _Input(tensor.name, tensor.datatype, shape, tensor)


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor, shape: tuple[int, ...]) -> np.ndarray:
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise InvalidRequest(
            f"input '{tensor.name}': {tensor.datatype} data must be sent in raw_input_contents"
        )
    values = getattr(tensor.contents, field)
    if not len(values):
        # The usual cause: a client filled the contents field of another datatype.
        filled = [f.name for f, _ in tensor.contents.ListFields()]
        if filled:
            raise InvalidRequest(
                f"input '{tensor.name}': {tensor.datatype} data goes in contents.{field}, "
                f"the request filled {', '.join(filled)}"
            )
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidRequest(
            f"input '{tensor.name}': shape {list(shape)} needs {count} elements, contents has {len(values)}"
        )
    if tensor.datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
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


def parameter_value(parameter: pb.InferParameter) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None
