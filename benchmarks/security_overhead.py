"""Per-request cost of the security gate (API key check, rate limit, audit) on the REST path.

Two measurements, both in one process so that only the gate differs:
  gate     ``Gate.admit`` alone (plus the REST front-end's path classification and header scan),
           for each configuration, in a tight loop: the added work per request.
  asgi     the REST app called directly as ASGI (no sockets, no HTTP parsing) for a V2 JSON infer
           request on the example ``tabular`` model, gate off vs on, in alternating rounds.
  grpc     ModelInfer on ``tabular`` through a grpc.aio server (interceptor installed only when a
           gate is) and a grpc.aio client on the same event loop, over loopback.
With --redis URL the Redis-backed limiter is measured too (one round trip to Redis per request).

    python benchmarks/security_overhead.py [--requests 20000] [--rounds 7] [--redis redis://127.0.0.1:6379/0]

Prints the minimum and the median over the rounds: on a shared machine the minimum is the better
estimate of the work itself, the median shows what noise adds.

Needs: pip install -e '.[examples]' (the example models are built into a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson

from inferd.dataplane.dataplane import DataPlane
from inferd.examples import TABULAR_FEATURES, build_repository
from inferd.grpc.server import GrpcServer
from inferd.http import access
from inferd.http.app import RestApp
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc
from inferd.repository.manager import ModelRepository
from inferd.security.audit import AuditLog
from inferd.security.auth import Authenticator
from inferd.security.gate import Gate
from inferd.security.keys import KeyStore, hash_key, new_key
from inferd.security.ratelimit import Limiter, Limits, LocalLimiter

# thread (default): CPU time of the event-loop thread, where the gate runs; other jobs on a shared
# machine hardly disturb it, and ONNX Runtime's spinning worker threads are left out. cpu: CPU time
# of the whole process, all threads. wall: elapsed time.
CLOCKS = {"thread": time.thread_time_ns, "cpu": time.process_time_ns, "wall": time.perf_counter_ns}
CLOCK = [time.thread_time_ns]
KEY = new_key()
PATH = "/v2/models/tabular/infer"
# Effectively unlimited, so every request is allowed and does the full bucket update.
NO_DENIAL = Limits(rate=1e9, burst=1_000_000_000)


def _gate(workdir: Path, auth: bool, limiter: Limiter | None, audit: bool) -> Gate:
    authenticator = None
    if auth:
        keys = workdir / "keys.yaml"
        lines = [f"  - id: other{i}\n    hash: {hash_key(new_key())}\n" for i in range(100)]
        keys.write_text("keys:\n" + "".join(lines) + f"  - id: bench\n    hash: {hash_key(KEY)}\n")
        authenticator = Authenticator(KeyStore(keys), open_health=False)
    log = AuditLog(workdir / f"audit-{time.monotonic_ns()}.jsonl") if audit else None
    return Gate(authenticator, limiter, NO_DENIAL, log)


async def _configurations(workdir: Path, redis_url: str | None) -> dict[str, Gate]:
    gates = {
        "auth": _gate(workdir, True, None, False),
        "auth+ratelimit": _gate(workdir, True, LocalLimiter(), False),
        "auth+ratelimit+audit": _gate(workdir, True, LocalLimiter(), True),
        "ratelimit by address (no keys)": _gate(workdir, False, LocalLimiter(), False),
    }
    if redis_url:
        from inferd.security.redis_limiter import RedisLimiter

        gates["auth+ratelimit(redis)"] = _gate(workdir, True, RedisLimiter(redis_url), False)
    for gate in gates.values():
        if gate.audit is not None:
            gate.audit.start()
    return gates


async def bench_gate(gates: dict[str, Gate], requests: int, rounds: int) -> dict[str, tuple[float, float]]:
    headers = [
        (b"host", b"x"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {KEY}".encode()),
    ]

    async def loop(gate: Gate | None, n: int) -> float:
        start = CLOCK[0]()
        for _ in range(n):
            wanted = access.classify("POST", PATH)
            credential = access.credential(headers)
            if gate is not None:
                await gate.admit(credential, wanted, "127.0.0.1")
                gate.record("http", "bench", "127.0.0.1", wanted, f"POST {PATH}", 200)
        return (CLOCK[0]() - start) / n / 1000

    configs: dict[str, Gate | None] = {"classify + header scan only": None, **gates}
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, gate in configs.items():
            n = max(1, requests // 20) if "redis" in name else requests
            times[name].append(await loop(gate, n))
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}


def _asgi_call(app: RestApp, body: bytes) -> Callable[[], Awaitable[int]]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {KEY}".encode()),
        ],
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    status = [0]

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            status[0] = event["status"]

    async def call() -> int:
        await app(scope, receive, send)
        return status[0]

    return call


async def bench_asgi(
    dataplane: DataPlane, gates: dict[str, Gate], requests: int, rounds: int
) -> dict[str, tuple[float, float]]:
    body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, TABULAR_FEATURES],
                    "datatype": "FP32",
                    "data": [0.5] * TABULAR_FEATURES,
                }
            ]
        }
    )
    apps = {"gate off": RestApp(dataplane, 1 << 20)}
    apps.update(
        {name: RestApp(dataplane, 1 << 20, gate=gate) for name, gate in gates.items() if "redis" not in name}
    )
    calls = {name: _asgi_call(app, body) for name, app in apps.items()}
    for name, call in calls.items():  # warm-up, and every configuration must answer 200
        for _ in range(200):
            status = await call()
            assert status == 200, (name, status)
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = CLOCK[0]()
            for _ in range(requests):
                await call()
            per_round[name].append((CLOCK[0]() - start) / requests / 1000)
    return {name: (min(times), statistics.median(times)) for name, times in per_round.items()}


async def bench_grpc(
    dataplane: DataPlane, gates: dict[str, Gate], requests: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Sequential ModelInfer calls over loopback, client and server on this event loop."""
    request = pb.ModelInferRequest(model_name="tabular")
    tensor = request.inputs.add(name="input", datatype="FP32")
    tensor.shape.extend([1, TABULAR_FEATURES])
    request.raw_input_contents.append(np.full((1, TABULAR_FEATURES), 0.5, np.float32).tobytes())
    metadata = (("authorization", f"Bearer {KEY}"),)
    configs = {"gate off": None, **{name: gate for name, gate in gates.items() if "redis" not in name}}
    servers, channels, stubs = [], [], {}
    for name, gate in configs.items():
        server = GrpcServer(dataplane, 1 << 20, gate=gate)
        port = await server.start("127.0.0.1", 0)
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        stubs[name] = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    times: dict[str, list[float]] = {name: [] for name in configs}
    try:
        for stub in stubs.values():  # warm-up; every configuration must answer
            for _ in range(100):
                await stub.ModelInfer(request, metadata=metadata)
        for _ in range(rounds):
            for name, stub in stubs.items():
                start = CLOCK[0]()
                for _ in range(requests):
                    await stub.ModelInfer(request, metadata=metadata)
                times[name].append((CLOCK[0]() - start) / requests / 1000)
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(0)
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}


def _print_against_base(results: dict[str, tuple[float, float]]) -> None:
    base_low, base_mid = results["gate off"]
    for name, (low, mid) in results.items():
        print(
            f"  {name:34s} min {low:8.2f} ({low - base_low:+6.2f})"
            f"  median {mid:8.2f} ({mid - base_mid:+6.2f})"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="thread", help="default: thread")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis", help="also measure the Redis-backed limiter against this URL")
    args = parser.parse_args()
    CLOCK[0] = CLOCKS[args.clock]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        build_repository(workdir / "models")
        repository = ModelRepository(workdir / "models")
        repository.load_all()
        dataplane = DataPlane(repository)
        gates = await _configurations(workdir, args.redis)
        try:
            print(f"Per request, µs of {args.clock} time: min and median of {args.rounds} interleaved rounds")
            print(f"Gate.admit + REST classify + header scan + audit record, {args.requests} calls a round:")
            for name, (low, mid) in (await bench_gate(gates, args.requests, args.rounds)).items():
                print(f"  {name:34s} min {low:8.2f}  median {mid:8.2f}")
            asgi_requests = max(1, args.requests // 4)
            print(f"REST infer on tabular via ASGI, {asgi_requests} requests a round:")
            _print_against_base(await bench_asgi(dataplane, gates, asgi_requests, args.rounds))
            grpc_requests = max(1, args.requests // 20)
            print(f"gRPC ModelInfer on tabular over loopback, {grpc_requests} sequential calls a round:")
            _print_against_base(await bench_grpc(dataplane, gates, grpc_requests, args.rounds))
        finally:
            for gate in gates.values():
                await gate.close()
            await repository.close()


if __name__ == "__main__":
    asyncio.run(main())
