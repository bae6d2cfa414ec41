"""Bounded reads of the protobuf wire format: counts checked without parsing past the declared count."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferd.errors import InvalidRequest
from inferd.protocol import wire
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol.grpc_codec import decode_infer_request, parse_infer_request

FP32, INT, BYTES = 6, 2, 8  # InferTensorContents field numbers


def _varint(value: int) -> bytes:
    value &= 2**64 - 1  # negative int32/int64 travel as 10-byte two's complement varints
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, kind: int) -> bytes:
    return _varint(number << 3 | kind)


def _len(number: int, payload: bytes) -> bytes:
    return _key(number, wire.LEN) + _varint(len(payload)) + payload


def _count(blob: bytes, field: str, declared: int) -> None:
    number = pb.InferTensorContents.DESCRIPTOR.fields_by_name[field].number
    kind = {"fp32_contents": wire.I32, "fp64_contents": wire.I64}.get(field, wire.VARINT)
    wire.count_elements("x", blob, field, number, kind, declared)


PACKED_FP32 = _len(FP32, struct.pack("<4f", 1, 2, 3, 4))
UNPACKED_FP32 = b"".join(_key(FP32, wire.I32) + struct.pack("<f", v) for v in (1, 2, 3, 4))
PACKED_INT = _len(INT, b"".join(_varint(v) for v in (-1, 0, 300, 2**31 - 1)))
UNPACKED_INT = b"".join(_key(INT, wire.VARINT) + _varint(v) for v in (-1, 0, 300, 2**31 - 1))


@pytest.mark.parametrize("blob", [PACKED_FP32, UNPACKED_FP32, PACKED_FP32[:8] + UNPACKED_FP32[10:]])
def test_fp32_counts_packed_unpacked_and_mixed(blob: bytes) -> None:
    _count(blob, "fp32_contents", 4)
    with pytest.raises(InvalidRequest, match="needs 3 elements"):
        _count(blob, "fp32_contents", 3)
    with pytest.raises(InvalidRequest, match="needs 5 elements, contents.fp32_contents has 4"):
        _count(blob, "fp32_contents", 5)


@pytest.mark.parametrize("blob", [PACKED_INT, UNPACKED_INT])
def test_varint_counts_packed_and_unpacked(blob: bytes) -> None:
    _count(blob, "int_contents", 4)
    with pytest.raises(InvalidRequest, match="needs 3 elements"):
        _count(blob, "int_contents", 3)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (PACKED_INT[:-1], "runs past the end"),  # the run's length says more than there is
        (_len(INT, b"\x01\x02\x80"), "inside a varint"),  # the run's last varint is cut
        (_key(INT, wire.VARINT) + b"\x80", "ends inside a varint"),
        (_key(INT, wire.VARINT) + b"\xff" * 11, "longer than 10 bytes"),
        (_len(INT, b"\x00" * 40), "has more"),
        (_key(INT, wire.I64) + b"\x00" * 8, "wrong wire type"),
        (_len(BYTES, b"a"), "contents.int_contents only, the request filled contents.bytes_contents"),
        (_len(99, b"a"), "field 99"),
        (_key(INT, 3), "wire type 3"),
    ],
)
def test_malformed_contents_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _count(blob, "int_contents", 3)


@pytest.mark.parametrize(
    ("blob", "message"),
    [(_len(FP32, b"\x00" * 7), "4-byte elements"), (_key(FP32, wire.I64) + b"\x00" * 8, "wrong wire type")],
)
def test_malformed_fixed_width_contents_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _count(blob, "fp32_contents", 2)


def test_a_packed_run_longer_than_the_count_allows_is_refused_unread() -> None:
    # 1 M one-byte varints for 4 declared elements: refused from the run's length alone.
    with pytest.raises(InvalidRequest, match="needs 4 elements, contents.int_contents has more"):
        _count(_len(INT, b"\x00" * 1_000_000), "int_contents", 4)


def test_empty_packed_runs_are_bounded_too() -> None:
    with pytest.raises(InvalidRequest, match="more entries than that"):
        _count(_len(INT, b"") * 1000, "int_contents", 4)


def test_bytes_elements_stop_after_the_declared_count() -> None:
    four = b"".join(_len(BYTES, e) for e in (b"", b"a", b"bc", b"\xff" * 200))
    assert wire.bytes_elements("x", four, BYTES, 4) == [b"", b"a", b"bc", b"\xff" * 200]
    with pytest.raises(InvalidRequest, match="needs 3 elements, contents.bytes_contents has more"):
        wire.bytes_elements("x", four, BYTES, 3)
    with pytest.raises(InvalidRequest, match="needs 5 elements, contents.bytes_contents has 4"):
        wire.bytes_elements("x", four, BYTES, 5)
    # What follows the element past the count is never read: garbage there changes nothing.
    with pytest.raises(InvalidRequest, match="has more"):
        wire.bytes_elements("x", four + b"\xff" * 20, BYTES, 3)
    with pytest.raises(InvalidRequest, match="wrong wire type"):
        wire.bytes_elements("x", _key(BYTES, wire.VARINT) + b"\x01", BYTES, 1)


def _request_with(tensor: bytes) -> bytes:
    return _len(1, b"m") + _len(5, tensor)


def _tensor(datatype: str, shape: list[int], *contents: bytes) -> bytes:
    head = _len(1, b"x") + _len(2, datatype.encode()) + _len(3, b"".join(map(_varint, shape)))
    return head + b"".join(_len(5, c) for c in contents)


@pytest.mark.parametrize(
    ("datatype", "contents", "expected"),
    [
        ("FP32", [UNPACKED_FP32], np.array([1, 2, 3, 4], np.float32)),
        ("FP32", [UNPACKED_FP32[:5], UNPACKED_FP32[5:]], np.array([1, 2, 3, 4], np.float32)),
        ("INT32", [UNPACKED_INT], np.array([-1, 0, 300, 2**31 - 1], np.int32)),
        # Two occurrences of `contents` merge, as protobuf merges a repeated message field.
        ("INT32", [PACKED_INT, b""], np.array([-1, 0, 300, 2**31 - 1], np.int32)),
        ("BYTES", [_len(BYTES, b"a") + _len(BYTES, b"b"), _len(BYTES, b"c") + _len(BYTES, b"")], None),
    ],
)
def test_typed_contents_decode_from_any_valid_encoding(
    datatype: str, contents: list[bytes], expected: np.ndarray | None
) -> None:
    message = parse_infer_request(_request_with(_tensor(datatype, [4], *contents)))
    if expected is None:
        decoded = decode_infer_request(message).inputs[0].data
        assert decoded.tolist() == [b"a", b"b", b"c", b""]
    else:
        np.testing.assert_array_equal(decode_infer_request(message).inputs[0].data, expected)


def test_what_the_python_protobuf_client_sends_decodes_the_same() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="INT64", shape=[2]).contents.int64_contents.extend([-5, 2**40])
    message.inputs.add(name="y", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
    decoded = decode_infer_request(parse_infer_request(message.SerializeToString())).inputs
    assert decoded[0].data.tolist() == [-5, 2**40] and decoded[1].data.tolist() == [b"hi"]


def test_a_large_request_of_many_entries_is_refused_before_it_is_parsed() -> None:
    padding = _len(7, b"\x00" * wire.CHECK_ABOVE_BYTES)  # one big raw_input_contents entry
    fine = _request_with(_tensor("FP32", [1, 4])) + padding
    assert len(parse_infer_request(fine).inputs) == 1
    flood = _request_with(_tensor("FP32", [1, 4])) + b"\x3a\x00" * wire.MAX_FIELDS + padding
    with pytest.raises(InvalidRequest, match=f"more than {wire.MAX_FIELDS} protobuf fields"):
        parse_infer_request(flood)
    # An input's own fields count too.
    flood = _request_with(_tensor("FP32", [1, 4]) + b"\x0a\x00" * wire.MAX_FIELDS) + padding
    with pytest.raises(InvalidRequest, match="protobuf fields"):
        parse_infer_request(flood)


def _shape(dims: int, packed: bool) -> bytes:
    return _len(3, b"\x01" * dims) if packed else (_key(3, wire.VARINT) + b"\x01") * dims


@pytest.mark.parametrize("packed", [True, False])
def test_a_large_request_with_too_many_dimensions_is_refused_before_it_is_parsed(packed: bool) -> None:
    padding = _len(7, b"\x00" * wire.CHECK_ABOVE_BYTES)
    with pytest.raises(InvalidRequest, match="more than 32 dimensions"):
        parse_infer_request(_request_with(_len(1, b"x") + _shape(33, packed)) + padding)
    accepted = parse_infer_request(_request_with(_len(1, b"x") + _shape(32, packed)) + padding)
    assert len(accepted.inputs[0].shape) == 32


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=8))
def test_any_bytes_are_walked_or_refused_cleanly(blob: bytes, declared: int) -> None:
    for read in (
        lambda: wire.check_request(blob),
        lambda: _count(blob, "int_contents", declared),
        lambda: _count(blob, "fp64_contents", declared),
        lambda: wire.bytes_elements("x", blob, BYTES, declared),
    ):
        with contextlib.suppress(InvalidRequest):
            read()
