"""Property tests for the wire codecs: valid tensors round-trip in every encoding, and arbitrary
bytes are either decoded or refused with InvalidRequest, never another exception."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import orjson
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inferd.datatypes import numpy_dtype
from inferd.errors import InvalidRequest
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol.grpc_codec import decode_infer_request, encode_infer_response, parse_infer_request
from inferd.protocol.json_codec import decode_request, encode_response
from inferd.protocol.tensors import from_raw, to_raw
from inferd.types import InferRequest, InferResponse, RequestedOutput, Tensor

NUMERIC = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@st.composite
def tensors(draw: st.DrawFn, datatypes: list[str] | None = None) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from(datatypes or [*NUMERIC, "BYTES"]))
    shape = draw(shapes)
    if datatype == "BYTES":
        count = math.prod(shape)
        elements = draw(st.lists(st.binary(max_size=12), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = elements
        return datatype, array.reshape(shape)
    dtype = numpy_dtype(datatype)
    elements = None
    if dtype.kind == "f":  # JSON has no NaN or infinity
        elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.tolist() == b.tolist()


@FAST
@given(tensors())
def test_binary_form_round_trips(tensor: tuple[str, np.ndarray]) -> None:
    datatype, array = tensor
    decoded = from_raw("x", datatype, array.shape, to_raw(datatype, array))
    assert _same(decoded, array)


@FAST
@given(tensors([*NUMERIC, "BYTES"]), st.booleans())
def test_rest_request_round_trips_as_json_or_binary(tensor: tuple[str, np.ndarray], binary: bool) -> None:
    datatype, array = tensor
    entry: dict[str, object] = {"name": "x", "datatype": datatype, "shape": list(array.shape)}
    raw = b""
    if binary:
        raw = to_raw(datatype, array)
        entry["parameters"] = {"binary_data_size": len(raw)}
    elif datatype == "BYTES":
        try:
            entry["data"] = [e.decode("utf-8") for e in array.reshape(-1)]
        except UnicodeDecodeError:
            return  # JSON carries text only; such elements travel in the binary form above
    else:
        entry["data"] = array.reshape(-1).tolist()
    header = orjson.dumps({"inputs": [entry]})
    request = decode_request(header + raw, len(header) if binary else None, "m", None)
    assert _same(request.inputs[0].data, array)


@FAST
@given(tensors(), st.booleans())
def test_rest_response_encodes_what_the_client_decodes(tensor: tuple[str, np.ndarray], binary: bool) -> None:
    datatype, array = tensor
    if datatype == "BYTES" and not binary:
        try:
            [e.decode("utf-8") for e in array.reshape(-1)]
        except UnicodeDecodeError:
            return
    request = InferRequest("m", None, [], outputs=[RequestedOutput("y", binary)])
    body, header_length = encode_response(request, InferResponse("m", "1", [Tensor("y", datatype, array)]))
    head = orjson.loads(body[:header_length] if header_length is not None else body)
    output = head["outputs"][0]
    assert output["shape"] == list(array.shape)
    if binary:
        decoded = from_raw("y", datatype, tuple(output["shape"]), body[header_length:])
    else:
        echo = orjson.dumps({"inputs": [{**output, "name": "y"}]})
        decoded = decode_request(echo, None, "m", None).inputs[0].data
    assert _same(decoded, array)


@FAST
@given(st.lists(tensors(), min_size=1, max_size=3))
def test_grpc_raw_and_typed_requests_round_trip(inputs: list[tuple[str, np.ndarray]]) -> None:
    raw = pb.ModelInferRequest(model_name="m")
    typed = pb.ModelInferRequest(model_name="m")
    for index, (datatype, array) in enumerate(inputs):
        name = f"x{index}"
        raw.inputs.add(name=name, datatype=datatype, shape=array.shape)
        raw.raw_input_contents.append(to_raw(datatype, array))
        entry = typed.inputs.add(name=name, datatype=datatype, shape=array.shape)
        field = {
            "BOOL": "bool",
            "INT64": "int64",
            "UINT64": "uint64",
            "FP32": "fp32",
            "FP64": "fp64",
            "BYTES": "bytes",
        }.get(
            datatype, "int" if datatype.startswith("INT") else "uint" if datatype.startswith("UINT") else None
        )
        if field is None:  # FP16 has no typed field: send raw contents only
            return
        getattr(entry.contents, f"{field}_contents").extend(array.reshape(-1).tolist())
    for message in (raw, typed):
        decoded = decode_infer_request(parse_infer_request(message.SerializeToString()))
        for (_, array), tensor in zip(inputs, decoded.inputs, strict=True):
            assert _same(tensor.data, array)


@FAST
@given(tensors())
def test_grpc_response_round_trips(tensor: tuple[str, np.ndarray]) -> None:
    datatype, array = tensor
    message = encode_infer_response(InferResponse("m", "1", [Tensor("y", datatype, array)]))
    output = message.outputs[0]
    decoded = from_raw("y", output.datatype, tuple(output.shape), message.raw_output_contents[0])
    assert _same(decoded, array)


# Arbitrary input -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Documents shaped like requests, with any values where the fields go: reaches deeper than noise.
request_like = st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["x", ""]) | json_values,
                    "datatype": st.sampled_from([*NUMERIC, "BYTES", "BF16", "X"]) | json_values,
                    "shape": st.lists(st.integers(min_value=-2, max_value=2**64), max_size=4) | json_values,
                },
                optional={
                    "data": json_values,
                    "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "k"]), json_values),
                },
            ),
            max_size=3,
        )
        | json_values
    },
    optional={"outputs": json_values, "parameters": json_values, "id": json_values},
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.none() | st.integers(min_value=-5, max_value=250))
def test_any_bytes_are_decoded_or_refused_cleanly(body: bytes, json_length: int | None) -> None:
    with contextlib.suppress(InvalidRequest):
        decode_request(body, json_length, "m", None)


@settings(max_examples=200, deadline=None)
@given(request_like, st.binary(max_size=40))
def test_any_request_shaped_json_is_decoded_or_refused_cleanly(document: object, binary: bytes) -> None:
    header = json.dumps(document).encode()  # the stdlib writes integers orjson would refuse
    for body, length in ((header, None), (header + binary, len(header))):
        with contextlib.suppress(InvalidRequest):
            decode_request(body, length, "m", None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_protobuf_bytes_are_decoded_or_refused_cleanly(wire: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        try:
            message = parse_infer_request(wire)
        except DecodeError:  # not a message at all: the gRPC handler answers INVALID_ARGUMENT
            return
        decode_infer_request(message)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*NUMERIC, "BYTES", "BF16", "FOO"]),
            st.lists(st.integers(min_value=-3, max_value=2**63 - 1), max_size=4),
            st.binary(max_size=40),
            st.sampled_from(["fp32", "int", "int64", "uint", "uint64", "bool", "bytes", "fp64", None]),
        ),
        max_size=3,
    ),
    st.booleans(),
)
def test_any_structured_grpc_request_is_decoded_or_refused_cleanly(
    inputs: list[tuple[str, list[int], bytes, str | None]], use_raw: bool
) -> None:
    message = pb.ModelInferRequest(model_name="m")
    for datatype, shape, raw, field in inputs:
        entry = message.inputs.add(name="x", datatype=datatype, shape=shape)
        if use_raw:
            message.raw_input_contents.append(raw)
        elif field is not None:
            values = getattr(entry.contents, f"{field}_contents")
            if field == "bytes":
                values.extend([raw[:3], raw[3:]])
            elif field == "bool":
                values.extend([b % 2 == 1 for b in raw])
            elif field in ("fp32", "fp64"):
                values.extend([float(b) - 128 for b in raw])
            elif field.startswith("u"):
                values.extend(list(raw))
            else:
                values.extend([b - 128 for b in raw])
    with contextlib.suppress(InvalidRequest):
        decode_infer_request(parse_infer_request(message.SerializeToString()))
