"""Bounded reads of the protobuf wire format, for gRPC requests before (and instead of) a full parse.

A protobuf parser allocates per entry of a repeated field: tens of bytes for an entry of two bytes on
the wire, so a 64 MiB message of empty entries (a few KB gzip-compressed) costs a GB before any check
could refuse it. These walks read only tags and lengths and stop at a bound, so what a request costs
is bounded by that, not by how many entries it holds:

- ``check_request``: a large ModelInferRequest's fields, those of its inputs and outputs included, are
  counted (at most ``MAX_FIELDS``) and every shape's rank is checked, before the parse.
- ``count_elements`` / ``bytes_elements``: an input's typed contents (kept as bytes by the parse, see
  proto/inferd_light.proto) against its declared element count, which the model's admission has
  checked, stopping as soon as they hold more.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from inferd.errors import InvalidRequest
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol.tensors import MAX_DIMS

# Wire types (groups, 3 and 4, are deprecated and never valid in these messages).
VARINT, I64, LEN, I32 = 0, 1, 2, 5

# A request holds a few fields per input and output; this many in all (top level, inputs and outputs
# together) is far beyond any model and bounds the parse of a refused request to a few MB.
MAX_FIELDS = 65_536
# Below this size a request is parsed unchecked: whatever its entries, the parse costs at most a few
# MB (about 90 B per entry at worst, an empty input), and the check's cost stays off small requests.
CHECK_ABOVE_BYTES = 65_536

_REQUEST_INPUTS, _REQUEST_OUTPUTS, _INPUT_SHAPE = 5, 6, 3
_CONTENTS = pb.InferTensorContents.DESCRIPTOR.fields_by_number
_MAX_VARINT_BYTES = 10


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 7 * _MAX_VARINT_BYTES:
            raise InvalidRequest("the request holds a varint longer than 10 bytes")
    raise InvalidRequest("the request ends inside a varint")


def fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(number, wire type, start, end of the value) of each field in ``buf[start:end]``; a malformed
    key, a group or a value running past ``end`` is refused."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, kind = key >> 3, key & 7
        if kind == LEN:
            length, pos = _varint(buf, pos, end)
            value_end = pos + length
        elif kind == VARINT:
            value_end = _varint(buf, pos, end)[1]
        elif kind == I32:
            value_end = pos + 4
        elif kind == I64:
            value_end = pos + 8
        else:
            raise InvalidRequest(f"the request holds a field of wire type {kind}, which is not valid here")
        if number == 0:
            raise InvalidRequest("the request holds a field numbered 0")
        if value_end > end:
            raise InvalidRequest("a field of the request runs past the end of its message")
        yield number, kind, pos, value_end
        pos = value_end


def check_request(wire: bytes) -> None:
    """Refuse a serialized ModelInferRequest whose parse could cost more than its bound: more than
    ``MAX_FIELDS`` fields in all (top level, inputs' and outputs' own fields), or a shape of more than
    ``MAX_DIMS`` dimensions. Each input's contents stay unread (the parse keeps them as bytes)."""
    budget = MAX_FIELDS
    for number, kind, start, end in fields(wire, 0, len(wire)):
        budget -= 1
        if number in (_REQUEST_INPUTS, _REQUEST_OUTPUTS) and kind == LEN:
            budget = _check_tensor(wire, start, end, budget, number == _REQUEST_INPUTS)
        if budget < 0:
            raise InvalidRequest(f"the request holds more than {MAX_FIELDS} protobuf fields")


def _check_tensor(wire: bytes, start: int, end: int, budget: int, is_input: bool) -> int:
    dims = 0
    for number, kind, value_start, value_end in fields(wire, start, end):
        budget -= 1
        if budget < 0:
            break
        if is_input and number == _INPUT_SHAPE:
            if kind == LEN:  # packed: one varint per dimension, each ending in a byte below 0x80
                if value_end - value_start > _MAX_VARINT_BYTES * MAX_DIMS:
                    dims = MAX_DIMS + 1
                else:
                    dims += sum(byte < 0x80 for byte in wire[value_start:value_end])
            else:
                dims += 1
            if dims > MAX_DIMS:
                raise InvalidRequest(f"an input's shape has more than {MAX_DIMS} dimensions")
    return budget


def count_elements(name: str, blob: bytes, field: str, number: int, kind: int, declared: int) -> None:
    """Check that serialized InferTensorContents ``blob`` holds exactly ``declared`` elements, all in
    field ``number`` (a scalar field whose elements have wire type ``kind``), packed or not.

    Work is bounded by ``declared``: it stops at the first field past the count, and a packed run is
    measured by its length (fixed width) or by counting its last varint bytes after a bound check."""
    count = 0
    # An empty packed run adds no element but costs a step: the steps are bounded too.
    for steps, (number_read, kind_read, start, end) in enumerate(fields(blob, 0, len(blob)), 1):
        _check_field(name, field, number, number_read)
        if steps > declared + 1:
            raise _count_error(name, field, declared, "more entries than that")
        if kind_read == kind:  # one element, not packed
            count += 1
        elif kind_read == LEN:
            count += _packed(name, blob, start, end, kind, declared - count)
        else:
            raise InvalidRequest(f"input '{name}': contents.{field} holds a value of the wrong wire type")
        if count > declared:
            raise _count_error(name, field, declared, "more")
    if count != declared:
        raise _count_error(name, field, declared, str(count))


def _packed(name: str, blob: bytes, start: int, end: int, kind: int, room: int) -> int:
    length = end - start
    if kind != VARINT:
        width = 4 if kind == I32 else 8
        if length % width:
            raise InvalidRequest(
                f"input '{name}': packed contents of {length} bytes for {width}-byte elements"
            )
        return length // width
    if not length:
        return 0
    if blob[end - 1] >= 0x80:
        raise InvalidRequest(f"input '{name}': the contents end inside a varint")
    if length > _MAX_VARINT_BYTES * room:  # holds more than ``room`` varints: not worth counting
        return room + 1
    return int(np.count_nonzero(np.frombuffer(blob, np.uint8, length, start) < 0x80))


def bytes_elements(name: str, blob: bytes, number: int, declared: int) -> list[bytes]:
    """The elements of BYTES contents (repeated bytes field ``number``), refusing any other field and
    any count but ``declared``; stops at the first element past the count."""
    elements: list[bytes] = []
    for number_read, kind_read, start, end in fields(blob, 0, len(blob)):
        _check_field(name, "bytes_contents", number, number_read)
        if kind_read != LEN:
            raise InvalidRequest(
                f"input '{name}': contents.bytes_contents holds a value of the wrong wire type"
            )
        if len(elements) == declared:
            raise _count_error(name, "bytes_contents", declared, "more")
        elements.append(blob[start:end])
    if len(elements) != declared:
        raise _count_error(name, "bytes_contents", declared, str(len(elements)))
    return elements


def _check_field(name: str, field: str, number: int, number_read: int) -> None:
    if number_read != number:
        known = _CONTENTS.get(number_read)
        filled = f"contents.{known.name}" if known else f"field {number_read} of the contents"
        raise InvalidRequest(
            f"input '{name}': its data goes in contents.{field} only, the request filled {filled}"
        )


def _count_error(name: str, field: str, declared: int, found: str) -> InvalidRequest:
    return InvalidRequest(
        f"input '{name}': its shape needs {declared} elements, contents.{field} has {found}"
    )
