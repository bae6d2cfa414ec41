"""gRPC request decoding under a model's Admission: declared inputs are checked before any contents."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from inferd.dataplane.validation import SignatureAdmission
from inferd.errors import InvalidRequest
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import inferd_light_pb2 as light
from inferd.protocol.grpc_codec import decode_infer_request, parse_infer_request
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

ADMISSION = SignatureAdmission(
    "m",
    Signature(
        inputs=(TensorSpec("x", "BYTES", (4,)),), outputs=(TensorSpec("y", "BYTES", (4,)),), max_batch_size=8
    ),
    max_elements=10**9,
)


def _request(shape: Iterable[int], entries: int, outputs: int = 0) -> light.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype="BYTES", shape=list(shape))
    # Elements of the wrong kind: decoding them would fail with another message.
    tensor.contents.int_contents.extend([1] * entries)
    for _ in range(outputs):
        message.outputs.add(name="y")
    return parse_infer_request(message.SerializeToString())


def test_a_declared_batch_beyond_the_model_is_refused_before_the_contents() -> None:
    with pytest.raises(InvalidRequest, match="exceeds the max_batch_size 8"):
        decode_infer_request(_request((100_000, 4), 400_000), ADMISSION)
    # Without the admission (a lazy model not loaded yet) the contents are where it fails.
    with pytest.raises(InvalidRequest, match="contents.bytes_contents"):
        decode_infer_request(_request((100_000, 4), 400_000))


def test_requested_outputs_are_checked_before_the_contents() -> None:
    with pytest.raises(InvalidRequest, match="requested more than once"):
        decode_infer_request(_request((1, 4), 4, outputs=10_000), ADMISSION)
