"""The REST hot path with the security gate off: this checkout's RestApp vs another version of it.

Loads another version of ``inferd/http/app.py`` (e.g. the one before the security work:
``git show <commit>:inferd/http/app.py > before.py``) next to this checkout's, and times the same
V2 JSON infer request on the example ``tabular`` model through both, called directly as ASGI, in
interleaved rounds. Prints the minimum and median µs per request of each.

    PYTHONPATH=. python benchmarks/gate_off_ab.py before.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from inferd.dataplane.dataplane import DataPlane
from inferd.examples import TABULAR_FEATURES, build_repository
from inferd.http.app import RestApp
from inferd.repository.manager import ModelRepository

# thread (default): CPU time of the event-loop thread, where the gate runs; other jobs on a shared
# machine hardly disturb it, and ONNX Runtime's spinning worker threads are left out. cpu: CPU time
# of the whole process, all threads. wall: elapsed time.
CLOCKS = {"thread": time.thread_time_ns, "cpu": time.process_time_ns, "wall": time.perf_counter_ns}
CLOCK = [time.thread_time_ns]


def _load_other(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("other_http_app", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_http_app"] = module
    spec.loader.exec_module(module)
    return module.RestApp


async def _run(app: Any, body: bytes, requests: int) -> float:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/models/tabular/infer",
        "client": ("127.0.0.1", 50000),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            statuses.append(event["status"])

    start = CLOCK[0]()
    for _ in range(requests):
        await app(scope, receive, send)
    elapsed = (CLOCK[0]() - start) / requests / 1000
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {set(statuses)}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("other", type=Path, help="path of the other version's inferd/http/app.py")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="thread", help="default: thread")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    CLOCK[0] = CLOCKS[args.clock]
    other_app = _load_other(args.other)
    body = orjson.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, TABULAR_FEATURES], "datatype": "FP32", "data": [0.5] * 30}
            ]
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        build_repository(Path(tmp))
        repository = ModelRepository(Path(tmp))
        repository.load_all()
        dataplane = DataPlane(repository)
        apps = {
            "this checkout (gate off)": RestApp(dataplane, 1 << 20),
            "other": other_app(dataplane, 1 << 20),
        }
        for app in apps.values():
            await _run(app, body, 200)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, app in apps.items():
                times[name].append(await _run(app, body, args.requests))
        for name, values in times.items():
            low, mid = min(values), statistics.median(values)
            print(f"{name:28s} min {low:8.2f}  median {mid:8.2f}  µs/request ({args.clock} time)")
        await repository.close()


if __name__ == "__main__":
    asyncio.run(main())
