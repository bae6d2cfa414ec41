"""Encode one inference request once, in the wire form of the chosen protocol.

The load loops then resend the same bytes: encoding cost stays out of the measured generator time.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import orjson

from inferd.bench.inputs import InputTensor

Encoding = Literal["json", "binary"]


@dataclass(frozen=True, slots=True)
class RestPayload:
    body: bytes
    # Length of the JSON header when binary tensors follow it (the binary-data extension), else None.
    json_length: int | None


def _raw_bytes(tensor: InputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in tensor.data.reshape(-1))
    return np.ascontiguousarray(tensor.data).astype(tensor.data.dtype.newbyteorder("<")).tobytes()


def _json_data(tensor: InputTensor) -> list[object]:
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", errors="replace") for v in flat]
    return list(flat.tolist())


def rest_payload(inputs: Sequence[InputTensor], encoding: Encoding) -> RestPayload:
    """A V2 REST infer body: plain JSON, or a JSON header followed by binary tensors and asking for
    binary outputs too (as tritonclient and perf_analyzer do by default)."""
    if encoding == "json":
        document = {
            "inputs": [
                {"name": t.name, "shape": list(t.shape), "datatype": t.datatype, "data": _json_data(t)}
                for t in inputs
            ]
        }
        return RestPayload(orjson.dumps(document), None)
    blobs = [_raw_bytes(t) for t in inputs]
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": t.name,
                    "shape": list(t.shape),
                    "datatype": t.datatype,
                    "parameters": {"binary_data_size": len(blob)},
                }
                for t, blob in zip(inputs, blobs, strict=True)
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return RestPayload(header + b"".join(blobs), len(header))


def grpc_payload(inputs: Sequence[InputTensor], model: str, version: str) -> bytes:
    """A serialized ``ModelInferRequest`` with the tensors in ``raw_input_contents``."""
    from inferd.protocol._generated import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for tensor in inputs:
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        request.raw_input_contents.append(_raw_bytes(tensor))
    return request.SerializeToString()
