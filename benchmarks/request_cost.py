"""Event-loop CPU per REST inference request, step by step, in process (no sockets, no model run).

The c=64 throughput of a small model is bounded by the main thread's work per request; on a shared
machine, wall-clock load tests swing by tens of percent between runs, so this measures each step
directly: the minimum over many short timing windows, which a preempted window cannot lower.

    decode    servable check, JSON (+ binary) parse, the admission's checks, tensor decode
    prepare   validation against the signature and the input limits
    response  the InferResponse of the model's outputs
    encode    the REST body
    watch     a disconnect listener armed and stopped without starting (every REST request)

    PYTHONPATH=. python benchmarks/request_cost.py [--repository DIR] [--out FILE]

Prints a table and writes benchmarks/results/request_cost.json (or --out). Run it in a worktree of an
older commit with PYTHONPATH pointing there to compare (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import overhead  # noqa: E402  (its request bodies, so both benchmarks send the same)

from inferd.app import Server  # noqa: E402
from inferd.examples import build_repository  # noqa: E402
from inferd.http.app import _DisconnectWatch, _RestCall  # noqa: E402
from inferd.settings import Settings  # noqa: E402

WINDOW_S = 0.0005  # short enough that most windows run unpreempted
WINDOWS = 1500


def best_us(step: Callable[[], object]) -> float:
    """Microseconds per call: the fastest of many short windows."""
    one = min(timeit.repeat(step, number=1, repeat=50))
    number = max(1, int(WINDOW_S / max(one, 1e-7)))
    return min(timeit.repeat(step, number=number, repeat=WINDOWS)) / number * 1e6


async def measure(repository: Path) -> dict[str, dict[str, float]]:
    server = Server(Settings(model_repository=repository))
    await server.load_models_async()
    results: dict[str, dict[str, float]] = {}
    for model_name, features in overhead.FEATURES.items():
        binary, header_length = overhead.binary_body(features)
        bodies = (("json", overhead.json_body(features), None), ("binary", binary, header_length))
        for kind, body, length in bodies:
            call = _RestCall(model_name, None, None, [], body, length, None, None)
            results[f"{model_name} {kind}"] = await steps(server.dataplane, call)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    results["watch"] = {"armed and stopped": best_us(lambda: _DisconnectWatch(receive).stop())}
    return results


async def steps(dataplane: Any, call: _RestCall) -> dict[str, float]:
    request = dataplane._decode(call)
    model = dataplane._registry.get(call.model, None)
    checked = dataplane._prepare(model, request)
    outputs = await dataplane._schedule(model, request, checked)
    response = model.response(request.id, outputs, checked.outputs)
    return {
        "decode": best_us(lambda: dataplane._decode(call)),
        "prepare": best_us(lambda: dataplane._prepare(model, request)),
        "response": best_us(lambda: model.response(request.id, outputs, checked.outputs)),
        "encode": best_us(lambda: call.encode(request, response)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repository", type=Path, help="holding mlp and tabular (default: built in a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "request_cost.json")
    args = parser.parse_args()
    repository = args.repository
    if repository is None:
        repository = Path(tempfile.mkdtemp(prefix="inferd-request-cost-")) / "models"
        build_repository(repository)
        for extra in repository.iterdir():  # only the two models measured: the others load slowly
            if extra.name not in overhead.FEATURES:
                for path in sorted(extra.rglob("*"), reverse=True):
                    path.rmdir() if path.is_dir() else path.unlink()
                extra.rmdir()
    results = asyncio.run(measure(repository))
    print("| request | " + " | ".join(["decode", "prepare", "response", "encode", "total"]) + " |")
    print("|---|---|---|---|---|---|")
    for name, steps in results.items():
        if name == "watch":
            continue
        cells = [f"{steps[k]:.1f}" for k in ("decode", "prepare", "response", "encode")]
        print(f"| {name} | " + " | ".join(cells) + f" | {sum(steps.values()):.1f} |")
    print(f"disconnect watch armed and stopped: {results['watch']['armed and stopped']:.1f} us")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
