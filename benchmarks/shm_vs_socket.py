"""System shared memory against the socket: tritonclient throughput on a large-tensor model.

One inferd serves an ONNX identity model with a large FP32 input (``--floats`` per request, 4 MiB
by default) and one with the same input summed to a single value (so the output is small). For each,
one tritonclient at concurrency 1 sends ``--requests`` requests per round, over REST (binary tensor
data) and gRPC, once with tensors in the body and once in system shared memory regions (input and
output), side by side; medians of ``--rounds`` rounds.

    python benchmarks/shm_vs_socket.py [--floats 1048576] [--requests 100] [--rounds 3] [--json out.json]

Needs tritonclient with its shared memory helpers (tests/shims supplies pkg_resources when the
installed setuptools lacks it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "shims")]

from serverctl import start_server  # noqa: E402
from tritonshm import shared_memory  # noqa: E402

shm = shared_memory()


def _model(path: Path, floats: int, reduce: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [1, floats])
    if reduce:
        node = helper.make_node("ReduceSum", ["INPUT0"], ["OUTPUT0"], keepdims=1, axes=[1])
        y = helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [1, 1])
        opset = 11
    else:
        node = helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])
        y = helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [1, floats])
        opset = 13
    graph = helper.make_graph([node], "bench", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))


@contextmanager
def _regions(client: Any, in_bytes: int, out_bytes: int, data: np.ndarray) -> Iterator[None]:
    tag = uuid.uuid4().hex[:8]
    handles = [
        shm.create_shared_memory_region("bench_in", f"/bench_in_{tag}", in_bytes),
        shm.create_shared_memory_region("bench_out", f"/bench_out_{tag}", out_bytes),
    ]
    shm.set_shared_memory_region(handles[0], [data])
    client.register_system_shared_memory("bench_in", f"/bench_in_{tag}", in_bytes)
    client.register_system_shared_memory("bench_out", f"/bench_out_{tag}", out_bytes)
    try:
        yield
    finally:
        client.unregister_system_shared_memory()
        for handle in handles:
            shm.destroy_shared_memory_region(handle)


def _call(
    module: Any, client: Any, model: str, data: np.ndarray, out_floats: int, use_shm: bool
) -> Callable[[], None]:
    tensor = module.InferInput("INPUT0", list(data.shape), "FP32")
    output = module.InferRequestedOutput("OUTPUT0")
    if use_shm:
        tensor.set_shared_memory("bench_in", data.nbytes)
        output.set_shared_memory("bench_out", out_floats * 4)
    else:
        tensor.set_data_from_numpy(data, **({"binary_data": True} if module is httpclient else {}))

    def call() -> None:
        result = client.infer(model, [tensor], outputs=[output])
        if not use_shm:
            result.as_numpy("OUTPUT0")

    return call


def _rate(call: Callable[[], None], requests: int) -> float:
    call()  # warm: the connection, the region's pages
    start = time.perf_counter()
    for _ in range(requests):
        call()
    return requests / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--floats", type=int, default=1 << 20)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    floats = args.floats
    data = np.random.default_rng(0).standard_normal((1, floats), dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        _model(repo / "identity" / "1" / "model.onnx", floats, reduce=False)
        _model(repo / "sum" / "1" / "model.onnx", floats, reduce=True)
        limit = str(64 * floats + (1 << 20))
        server = start_server(repo, Path(tmp), "--max-body-bytes", limit, "--grpc-max-message-bytes", limit)
        try:
            clients = {
                "REST": (
                    httpclient,
                    httpclient.InferenceServerClient(server.http_url.removeprefix("http://")),
                ),
                "gRPC": (
                    grpcclient,
                    grpcclient.InferenceServerClient(
                        server.grpc_url,
                        channel_args=[
                            ("grpc.max_receive_message_length", 64 * floats),
                            ("grpc.max_send_message_length", 64 * floats),
                        ],
                    ),
                ),
            }
            for model, out_floats in (("identity", floats), ("sum", 1)):
                for protocol, (module, client) in clients.items():
                    rates: dict[bool, list[float]] = {False: [], True: []}
                    with _regions(client, data.nbytes, out_floats * 4, data):
                        for _ in range(args.rounds):
                            for use_shm in (False, True):
                                call = _call(module, client, model, data, out_floats, use_shm)
                                rates[use_shm].append(_rate(call, args.requests))
                    socket_rate, shm_rate = (statistics.median(rates[k]) for k in (False, True))
                    rows.append(
                        {
                            "model": model,
                            "protocol": protocol,
                            "input_mib": data.nbytes / 2**20,
                            "socket_rps": socket_rate,
                            "shm_rps": shm_rate,
                            "ratio": shm_rate / socket_rate,
                        }
                    )
        finally:
            server.stop()
    print(
        f"{'model':<9} {'protocol':<8} {'input MiB':>9} {'socket req/s':>13} {'shm req/s':>10} "
        f"{'shm/socket':>10}"
    )
    for row in rows:
        print(
            f"{row['model']:<9} {row['protocol']:<8} {row['input_mib']:>9.1f} {row['socket_rps']:>13.1f} "
            f"{row['shm_rps']:>10.1f} {row['ratio']:>10.2f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"floats": floats, "requests": args.requests, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
