"""Cross-check ``inferd bench`` against wrk: same server, same JSON body, same number of connections.

Runs the two tools back to back (alternating, ``--rounds`` times) in the closed loop and prints their
requests/s and p50. Usage:

    python benchmarks/wrk_crosscheck.py http://127.0.0.1:8000 -m mlp --connections 8 --duration 10

Needs wrk (Debian package ``wrk``) and a running server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from inferd.bench.clients import infer_path
from inferd.bench.endpoint import Endpoint, model_metadata
from inferd.bench.inputs import parse_shapes, random_inputs
from inferd.bench.payloads import rest_payload

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_run(url: str, connections: int, duration: float, body: Path, path: str) -> dict[str, float]:
    script = Path(__file__).with_name("wrk_post.lua")
    env = {**os.environ, "BENCH_BODY": str(body), "BENCH_PATH": path}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not (p50 and rps):
        raise RuntimeError("cannot parse wrk output:\n" + out)
    return {
        "requests_per_s": float(rps.group(1)),
        "p50_ms": float(p50.group(1)) * _UNITS[p50.group(2)],
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def bench_run(url: str, model: str, connections: int, duration: float, shapes: list[str]) -> dict[str, float]:
    command = [
        sys.executable, "-m", "inferd", "bench", url, "-m", model, "--encoding", "json",
        "--concurrency", str(connections), "--duration", f"{duration:g}", "--warmup", "0",
        "--no-progress", "--json", "-", *[a for s in shapes for a in ("--shape", s)],
    ]  # fmt: skip
    run = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["runs"][0]
    return {
        "requests_per_s": run["requests_per_s"],
        "p50_ms": run["latency_ms"]["p50"],
        "errors": float(sum(run["errors"].values())),
        "generator_cpu_cores": run["generator"]["cpu_cores"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", action="append", default=[])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian package wrk)")
    endpoint = Endpoint.parse(args.url)
    tensors = random_inputs(model_metadata(endpoint, args.model), 1, parse_shapes(args.shape))
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_bytes(rest_payload(tensors, "json").body)
        path = infer_path(args.model, "")
        rows = []
        for round_ in range(args.rounds):
            for tool in ("wrk", "inferd bench"):
                if tool == "wrk":
                    result = wrk_run(args.url, args.connections, args.duration, body, path)
                else:
                    result = bench_run(args.url, args.model, args.connections, args.duration, args.shape)
                rows.append({"round": round_ + 1, "tool": tool, **result})
                print(json.dumps(rows[-1]), flush=True)
    for tool in ("wrk", "inferd bench"):
        mine = [r for r in rows if r["tool"] == tool]
        rps = statistics.median(r["requests_per_s"] for r in mine)
        p50 = statistics.median(r["p50_ms"] for r in mine)
        print(f"{tool:>13}: median of {len(mine)} rounds: {rps:.0f} req/s, p50 {p50:.3f} ms")


if __name__ == "__main__":
    main()
