"""Where a lone REST request's time goes in inferd, against the floor server's app, in process.

Drives inferd's ASGI app (RestApp, default settings) and benchmarks/floor_server.py's app with the same
JSON bodies, one request at a time, one loop turn apart (as a lone client's requests arrive), with a
fake receive/send: no sockets, no uvicorn, so what is left is each app's own work. Prints, per model,
both apps' p50 and CPU per request, and inferd's p50 per step (each step timed by a wrapper, so the
steps cost ~1 µs more each than unwrapped; the totals are measured in a separate, unwrapped pass).
The steps are wrapped on their classes before a second server is built, since the data plane and the
batcher hold some of them as bound methods taken when they are built.

    PYTHONPATH=. python benchmarks/lone_request.py [--requests 5000] [--models tabular,mlp]

Writes benchmarks/results/lone_request.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import inspect
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import floor_server  # noqa: E402
import overhead  # noqa: E402  (its request bodies, so both benchmarks send the same)

from inferd.app import Server  # noqa: E402
from inferd.dataplane.checks import RequestChecks  # noqa: E402
from inferd.dataplane.dataplane import DataPlane  # noqa: E402
from inferd.examples import build_repository  # noqa: E402
from inferd.http import app as http_app  # noqa: E402
from inferd.repository.loader import LoadedModel  # noqa: E402
from inferd.scheduler.batcher import Batcher  # noqa: E402
from inferd.scheduler.execution import Executor  # noqa: E402
from inferd.scheduler.recording import ExecutionRecorder  # noqa: E402
from inferd.settings import Settings  # noqa: E402

# The steps timed, outermost first: (owner, attribute, label).
STEPS: list[tuple[Any, str, str]] = [
    (http_app.RestApp, "_infer", "app: route to answer"),
    (DataPlane, "_decode", "decode (JSON, admission)"),
    (DataPlane, "infer", "data plane infer"),
    (RequestChecks, "prepare", "  validation"),
    (Batcher, "infer", "  batcher infer"),
    (Executor, "execute", "    execution (merge, ORT, split)"),
    (ExecutionRecorder, "record", "    statistics of the run"),
    (LoadedModel, "response", "  response"),
    (http_app._RestCall, "encode", "encode"),
]


def _timed(function: Callable[..., Any], samples: list[int]) -> Callable[..., Any]:
    clock = time.perf_counter_ns
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            result = await function(*args, **kwargs)
            samples.append(clock() - start)
            return result

        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        result = function(*args, **kwargs)
        samples.append(clock() - start)
        return result

    return timed


def _p50_us(samples: list[int]) -> float:
    return sorted(samples)[len(samples) // 2] / 1000 if samples else float("nan")


async def _drive(app: Any, path: str, body: bytes, count: int) -> tuple[list[int], float]:
    """Latency of each request and CPU per request (µs) on this thread."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "query_string": b"",
    }
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: dict[str, Any]) -> None:
        pass

    latencies = []
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns()
    for _ in range(count):
        start = clock()
        await app(scope, receive, send)
        latencies.append(clock() - start)
        await asyncio.sleep(0)  # a lone client's next request arrives in a later loop turn
    return latencies, (time.thread_time_ns() - cpu) / count / 1000


async def _started(repository: Path) -> tuple[Server, Any]:
    server = Server(Settings(model_repository=repository))
    await server.load_models_async()
    gc.freeze()  # as Server.serve does once the models are loaded
    return server, http_app.RestApp(server.dataplane, server.settings.http.max_body_bytes)


async def measure(repository: Path, models: list[str], count: int) -> dict[str, Any]:
    server, app = await _started(repository)
    results: dict[str, Any] = {}
    bodies = {model: overhead.json_body(overhead.FEATURES[model]) for model in models}
    for model in models:
        body = bodies[model]
        floor = floor_server.make_app(
            floor_server.make_session(str(repository / model / "1" / "model.onnx"), 0)
        )
        path = f"/v2/models/{model}/infer"
        row: dict[str, Any] = {}
        for name, target, target_path in (("floor", floor, "/"), ("inferd", app, path)):
            await _drive(target, target_path, body, count // 10)  # warm-up (and inferd's first runs)
            latencies, cpu_us = await _drive(target, target_path, body, count)
            row[name] = {"p50_us": _p50_us(latencies), "cpu_per_request_us": cpu_us}
        row["inline executions"] = server.repository.registry.get(model, None).stats.inline_executions
        results[model] = row
    await server.close_components()
    originals = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in STEPS]
    samples: dict[str, list[int]] = {label: [] for _, _, label in STEPS}
    for owner, attribute, label in STEPS:
        setattr(owner, attribute, _timed(getattr(owner, attribute), samples[label]))
    try:
        server, app = await _started(repository)
        for model in models:
            path = f"/v2/models/{model}/infer"
            await _drive(app, path, bodies[model], count // 10)  # inferd's first runs, as above
            for values in samples.values():
                values.clear()
            await _drive(app, path, bodies[model], count)
            results[model]["inferd steps p50_us"] = {
                label: _p50_us(values) for label, values in samples.items()
            }
        await server.close_components()
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--models", default="tabular,mlp")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lone_request.json")
    args = parser.parse_args()
    repository = Path(tempfile.mkdtemp(prefix="inferd-lone-")) / "models"
    build_repository(repository)
    models = args.models.split(",")
    results = uvloop.run(measure(repository, models, args.requests))
    for model, row in results.items():
        floor, inferd = row["floor"], row["inferd"]
        print(
            f"{model}: floor p50 {floor['p50_us']:.1f} µs (CPU {floor['cpu_per_request_us']:.1f} µs/req), "
            f"inferd p50 {inferd['p50_us']:.1f} µs (CPU {inferd['cpu_per_request_us']:.1f} µs/req), "
            f"{inferd['p50_us'] / floor['p50_us']:.2f}× the floor; inline runs {row['inline executions']}"
        )
        for label, value in row["inferd steps p50_us"].items():
            print(f"    {label:36s} {value:8.1f} µs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
