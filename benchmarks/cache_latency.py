"""Response cache: latency of a cache hit against running the model, in-process and over REST.

Part 1, in-process: what the cache adds per request (key hash, entry encode/decode) for the
example mlp's input (256 FP32) and for a 1 MiB tensor.
Part 2, end to end at concurrency 1 (one persistent HTTP connection, JSON bodies, the same client
for every row, so differences between rows are server-side):
  model path   mlp without response_cache
  hit          mlp with response_cache: true, the same request repeated (memory, then Redis)
  miss         mlp with response_cache: true, a different input every request (lookup + insert)

    python benchmarks/cache_latency.py [--requests 3000] [--no-redis]

Redis rows need redis-server on PATH (started here on a free port, no persistence).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from inferd.cache.entries import decode_outputs, encode_outputs
from inferd.cache.keys import response_key
from inferd.cache.memory import MemoryCache
from inferd.examples import build_repository


def _per_call_us(function: object, repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(repeat):
            function()  # type: ignore[operator]
        best = min(best, (time.perf_counter_ns() - start) / repeat / 1000)
    return best


def in_process() -> list[tuple[str, float]]:
    rows = []
    for label, array in (
        ("256 FP32 (mlp input)", np.random.default_rng(0).standard_normal((1, 256), dtype=np.float32)),
        ("1 MiB FP32", np.random.default_rng(0).standard_normal((1, 262144), dtype=np.float32)),
    ):
        inputs = {"input": ("FP32", array)}
        rows.append(
            (f"key, {label}", _per_call_us(lambda i=inputs: response_key("mlp", "1", i, ("y",), {}), 2000))
        )
        value = encode_outputs({"y": ("FP32", array)})
        rows.append(
            (f"encode entry, {label}", _per_call_us(lambda a=array: encode_outputs({"y": ("FP32", a)}), 2000))
        )
        rows.append((f"decode entry, {label}", _per_call_us(lambda v=value: decode_outputs(v), 2000)))
    cache = MemoryCache(1 << 30)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(cache.put(b"k" * 32, b"v" * 100))
    rows.append(
        (
            "memory cache get (hit), awaited",
            _per_call_us(lambda: loop.run_until_complete(cache.get(b"k" * 32)), 2000),
        )
    )
    loop.close()
    return rows


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _redis() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


@contextmanager
def _server(repository: Path, workdir: Path, *flags: str) -> Iterator[int]:
    port_file = workdir / f"ports-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "inferd", "serve", str(repository), "--http-port", "0", "--no-grpc"]
    process = subprocess.Popen([*command, "--port-file", str(port_file), *flags], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("inferd did not start")
            time.sleep(0.05)
        yield int(json.loads(port_file.read_text())["http"])
    finally:
        process.terminate()
        process.wait()


def _body(seed: int) -> bytes:
    data = np.random.default_rng(seed).standard_normal(256).astype(np.float32)
    document = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 256], "data": data.tolist()}]}
    return json.dumps(document).encode()


def _latencies(port: int, model: str, bodies: list[bytes]) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    path = f"/v2/models/{model}/infer"
    results = []
    for body in bodies:
        start = time.perf_counter_ns()
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        results.append((time.perf_counter_ns() - start) / 1000)
        if response.status != 200:
            raise RuntimeError(f"{model}: HTTP {response.status}")
    connection.close()
    return results


def _summary(label: str, samples: list[float]) -> tuple[str, float, float, float]:
    ordered = sorted(samples)
    return label, statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1], statistics.fmean(ordered)


def end_to_end(requests: int, redis: bool) -> list[tuple[str, float, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        repository = root / "models"
        build_repository(repository)
        shutil.copytree(repository / "mlp", repository / "mlp_cached")
        config = repository / "mlp_cached" / "config.yaml"
        config.write_text(config.read_text() + "response_cache: true\n")
        same = [_body(0)] * requests
        distinct = [_body(seed) for seed in range(1, requests + 1)]
        backends = [("memory", ())] + ([("redis", ("--cache",))] if redis else [])
        for backend, flag in backends:
            with _redis() if backend == "redis" else _nullcontext() as url:
                flags = (*flag, url) if url else ()
                with _server(repository, root, *flags) as port:
                    _latencies(port, "mlp", same[:300])  # warm-up
                    _latencies(port, "mlp_cached", same[:300])
                    if backend == "memory":
                        rows.append(_summary("model path (no cache)", _latencies(port, "mlp", same)))
                    rows.append(_summary(f"{backend} cache hit", _latencies(port, "mlp_cached", same)))
                    rows.append(_summary(f"{backend} cache miss", _latencies(port, "mlp_cached", distinct)))
    return rows


@contextmanager
def _nullcontext() -> Iterator[str]:
    yield ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    print("in-process costs (best of 5 rounds)")
    for label, us in in_process():
        print(f"  {label:38s} {us:8.2f} us")
    print(f"\nend to end, REST JSON, concurrency 1, {args.requests} requests per row")
    print(f"  {'path':28s} {'p50 us':>8s} {'p99 us':>8s} {'mean us':>8s}")
    for label, p50, p99, mean in end_to_end(
        args.requests, redis=not args.no_redis and bool(shutil.which("redis-server"))
    ):
        print(f"  {label:28s} {p50:8.0f} {p99:8.0f} {mean:8.0f}")


if __name__ == "__main__":
    main()
