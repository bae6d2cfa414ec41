"""In-process cost of checking and decoding a request, to compare checkouts: the servable check,
decoding the body (with the model's admission where the checkout has one) and the data plane's
signature validation, for the bundled tabular model (1x30 FP32). No execution: ORT and the thread
hop would drown these microseconds on a busy machine, and the figures are CPU time for the same reason.

Rows: REST JSON body; REST binary body (tritonclient's encoding); gRPC ModelInferRequest with raw
contents (parsed from its wire bytes each time, as grpc.aio does).

    PYTHONPATH=<checkout> python benchmarks/decode_overhead.py [--requests 20000] [--rounds 5]

It runs on checkouts from before the decode-before-refuse change too (check_servable returned None
there and the codecs took no admission).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferd.dataplane.dataplane import DataPlane
from inferd.dataplane.validation import validate
from inferd.examples import build_repository
from inferd.protocol import grpc_codec
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol.grpc_codec import decode_infer_request
from inferd.protocol.json_codec import decode_request
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.types import InferRequest

MODEL = "tabular"


def _admitted(admission: Any) -> tuple[Any, ...]:
    return () if admission is None else (admission,)


def _rows(dataplane: DataPlane) -> dict[str, Callable[[], InferRequest]]:
    data = np.random.default_rng(0).standard_normal((1, 30)).astype(np.float32)
    json_body = orjson.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": data.ravel().tolist()}]}
    )
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 30],
                    "parameters": {"binary_data_size": 120},
                }
            ]
        }
    )
    binary_body = header + data.tobytes()
    message = pb.ModelInferRequest(model_name=MODEL, raw_input_contents=[data.tobytes()])
    message.inputs.add(name="input", datatype="FP32", shape=[1, 30])
    wire = message.SerializeToString()
    # What the gRPC server parses requests with; checkouts before the light message used FromString.
    parse = getattr(grpc_codec, "parse_infer_request", pb.ModelInferRequest.FromString)

    def rest_json() -> InferRequest:
        admission = dataplane.check_servable(MODEL, None)  # type: ignore[func-returns-value]
        return decode_request(json_body, None, MODEL, None, *_admitted(admission))

    def rest_binary() -> InferRequest:
        admission = dataplane.check_servable(MODEL, None)  # type: ignore[func-returns-value]
        return decode_request(binary_body, len(header), MODEL, None, *_admitted(admission))

    def grpc_raw() -> InferRequest:
        request = parse(wire)
        admission = dataplane.check_servable(MODEL, None)  # type: ignore[func-returns-value]
        return decode_infer_request(request, *_admitted(admission))

    return {"REST JSON": rest_json, "REST binary": rest_binary, "gRPC raw contents": grpc_raw}


def _per_request_us(decode: Callable[[], InferRequest], signature: Signature, count: int) -> float:
    # CPU time of this process, not wall time: on a shared machine other processes' turns would
    # otherwise count as ours.
    start = time.process_time_ns()
    for _ in range(count):
        validate(decode(), signature)
    return (time.process_time_ns() - start) / count / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        build_repository(root)
        repository = ModelRepository(root)
        repository.load_all()
        dataplane = DataPlane(repository)
        signature = repository.get(MODEL).signature
        for label, decode in _rows(dataplane).items():
            _per_request_us(decode, signature, 2000)  # warm-up
            samples = [_per_request_us(decode, signature, args.requests) for _ in range(args.rounds)]
            print(f"{label:20s} median {statistics.median(samples):7.2f} us  min {min(samples):7.2f} us")
        asyncio.run(repository.close())


if __name__ == "__main__":
    main()
