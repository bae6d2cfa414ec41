import struct
from collections.abc import Iterable

import numpy as np
import orjson
import pytest

from inferd.errors import InvalidRequest
from inferd.protocol.json_codec import decode_request, encode_response
from inferd.types import DeclaredInput, InferRequest, InferResponse, RequestedOutput, Tensor


def _decode(doc: object, binary: bytes = b"") -> InferRequest:
    header = orjson.dumps(doc)
    return decode_request(header + binary, len(header) if binary else None, "m", None)


def test_flat_and_nested_data_decode_to_the_declared_shape() -> None:
    flat = _decode({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]})
    nested = _decode(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
    )
    for request in (flat, nested):
        array = request.inputs[0].data
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, [[1, 2], [3, 4]])


def test_id_outputs_and_parameters_are_kept() -> None:
    request = _decode(
        {
            "id": "abc",
            "inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [7]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
            "parameters": {"binary_data_output": False},
        }
    )
    assert request.id == "abc"
    assert request.outputs == [RequestedOutput("y", True)]
    assert request.parameters == {"binary_data_output": False}


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("BOOL", [True, False]),
        ("UINT8", [0, 255]),
        ("INT8", [-128, 127]),
        ("UINT64", [0, 2**63]),
        ("INT64", [-(2**62), 5]),
        ("FP16", [0.5, -2.0]),
        ("FP64", [1e300, -1.5]),
    ],
)
def test_every_numeric_datatype_decodes_from_json(datatype: str, data: list[object]) -> None:
    request = _decode({"inputs": [{"name": "x", "datatype": datatype, "shape": [2], "data": data}]})
    assert request.inputs[0].data.tolist() == data


def test_bytes_from_json_are_utf8_encoded() -> None:
    request = _decode({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "data": ["hé", ""]}]})
    assert request.inputs[0].data.tolist() == ["hé".encode(), b""]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]}, "needs 3 elements"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": ["a", "b"]}, "must be numbers"),
        ({"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}, "must be integers"),
        ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [256]}, "out of range"),
        ({"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}, "true/false"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": [[1], [2, 3]]}, "rectangular"),
        ({"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}, "unknown datatype"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}, "non-negative"),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, "neither 'data'"),
        ({"datatype": "FP32", "shape": [1], "data": [1]}, "'name'"),
        ({"name": "x", "datatype": "BF16", "shape": [1], "data": [1]}, "binary form"),
        ({"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}, "must be strings"),
    ],
)
def test_bad_tensors_are_rejected_with_a_reason(tensor: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _decode({"inputs": [tensor]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"inputs": []}', "non-empty 'inputs'"),
        (b'{"inputs": [1]}', "must be an object"),
    ],
)
def test_malformed_bodies_are_rejected(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        decode_request(body, None, "m", None)


def test_binary_inputs_are_read_in_order() -> None:
    a = np.arange(4, dtype=np.float32)
    b = np.array([-1, 2], dtype=np.int64)
    request = _decode(
        {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}},
                {"name": "b", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
            ]
        },
        a.tobytes() + b.tobytes(),
    )
    np.testing.assert_array_equal(request.inputs[0].data, a.reshape(2, 2))
    np.testing.assert_array_equal(request.inputs[1].data, b)


def test_binary_bytes_elements_are_length_prefixed() -> None:
    raw = b"".join(struct.pack("<I", len(e)) + e for e in (b"ab", b"", b"\xff"))
    request = _decode(
        {
            "inputs": [
                {"name": "s", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(raw)}}
            ]
        },
        raw,
    )
    assert request.inputs[0].data.tolist() == [b"ab", b"", b"\xff"]


@pytest.mark.parametrize(
    ("size", "binary", "message"),
    [
        (8, b"\x00" * 4, "runs past the end"),
        (8, b"\x00" * 12, "add up to 8"),
        (4, b"\x00" * 4, "needs 8 bytes"),
    ],
)
def test_binary_sections_that_disagree_with_the_header_are_rejected(
    size: int, binary: bytes, message: str
) -> None:
    doc = {
        "inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": size}}]
    }
    with pytest.raises(InvalidRequest, match=message):
        _decode(doc, binary)


def test_header_length_past_the_body_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="Inference-Header-Content-Length"):
        decode_request(b"{}", 10, "m", None)


def test_truncated_bytes_element_is_rejected() -> None:
    raw = struct.pack("<I", 10) + b"abc"
    doc = {
        "inputs": [
            {"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(raw)}}
        ]
    }
    with pytest.raises(InvalidRequest, match="runs past the end"):
        _decode(doc, raw)


def _response(*tensors: Tensor) -> InferResponse:
    return InferResponse(model="m", version="1", outputs=list(tensors), id="r1")


def test_json_response_has_flat_data_and_echoes_the_id() -> None:
    request = InferRequest("m", None, [])
    body, header_length = encode_response(
        request, _response(Tensor("y", "FP32", np.ones((2, 2), np.float32)))
    )
    assert header_length is None
    assert orjson.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "id": "r1",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 1.0, 1.0, 1.0]}],
    }


def test_binary_outputs_follow_the_json_header() -> None:
    request = InferRequest("m", None, [], outputs=[RequestedOutput("y", True), RequestedOutput("s", False)])
    y = np.arange(3, dtype=np.int16)
    s = np.array([b"x"], dtype=object)
    body, header_length = encode_response(
        request, _response(Tensor("y", "INT16", y), Tensor("s", "BYTES", s))
    )
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 6}
    assert header["outputs"][1]["data"] == ["x"]
    assert body[header_length:] == y.tobytes()


def test_binary_data_output_parameter_makes_every_output_binary() -> None:
    request = InferRequest("m", None, [], parameters={"binary_data_output": True})
    body, header_length = encode_response(request, _response(Tensor("y", "FP64", np.zeros(2))))
    assert header_length is not None
    assert body[header_length:] == np.zeros(2).tobytes()


def test_non_utf8_bytes_output_in_json_is_an_error() -> None:
    request = InferRequest("m", None, [])
    with pytest.raises(InvalidRequest, match="binary_data"):
        encode_response(request, _response(Tensor("s", "BYTES", np.array([b"\xff"], dtype=object))))


class _Refusing:
    """An Admission that records what it was shown and refuses it."""

    input_count = 1

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, tuple[int, ...]]] = []

    def check_inputs(self, declared: Iterable[DeclaredInput]) -> None:
        for tensor in declared:
            self.seen.append((tensor.name, tensor.datatype, tensor.shape))
        raise InvalidRequest("refused by the model")

    def check_outputs(self, names: Iterable[str]) -> None:
        raise AssertionError("not reached")


def test_the_admission_sees_the_declared_inputs_before_any_data_is_decoded() -> None:
    # The data is wrong in every way (strings for INT32, far fewer than declared), and still the
    # model's refusal comes first: it was asked before the data was touched.
    admission = _Refusing()
    header = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1000000, 4], "data": ["a", "b"]}]}
    )
    with pytest.raises(InvalidRequest, match="refused by the model"):
        decode_request(header, None, "m", None, admission)
    assert admission.seen == [("x", "INT32", (1000000, 4))]


def test_binary_bytes_are_walked_only_as_far_as_the_declared_count() -> None:
    raw = struct.pack("<I", 0) * 100_000
    doc = {
        "inputs": [
            {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw)}}
        ]
    }
    with pytest.raises(InvalidRequest, match="needs 2 BYTES elements, the data holds more"):
        _decode(doc, raw)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT32", [True, 1, 2], "must be integers"),
        ("INT64", [[1, 2], [False, 4]], "must be integers"),
        ("UINT8", [1, 2, True], "must be integers"),
        ("FP32", [1.5, True, 2], "must be numbers"),
    ],
)
def test_bools_mixed_into_numbers_are_refused(datatype: str, data: list[object], message: str) -> None:
    shape = [2, 2] if isinstance(data[0], list) else [len(data)]
    with pytest.raises(InvalidRequest, match=message):
        _decode({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]})


def test_raw_bool_bytes_must_be_0_or_1() -> None:
    doc = {"inputs": [{"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}]}
    assert _decode(doc, b"\x00\x01\x00").inputs[0].data.tolist() == [False, True, False]
    with pytest.raises(InvalidRequest, match="0 or 1"):
        _decode(doc, b"\x00\x01\x02")


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([2, 2], [[1, 2], [3, 4], [5, 6]], "rectangular"),  # outer list longer than the shape
        ([2, 2], [[1, 2], [3, 4, 5]], "rectangular"),
        ([2, 2], [[1, 2], 3], "rectangular"),
        ([2, 2], [[[1], [2]], [[3], [4]]], "rectangular"),  # nested deeper than the shape
        ([4], [1, 2, 3, 4, 5], "needs 4 elements, the data has 5"),
    ],
)
def test_nested_data_must_match_the_declared_shape(shape: list[int], data: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _decode({"inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": data}]})
