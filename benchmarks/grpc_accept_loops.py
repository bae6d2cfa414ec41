"""gRPC with several accept loops against one, side by side: throughput, latency and mean batch.

Two inferd servers run at once on the bundled example models, one with `--grpc-accept-loops 1` (one
grpc.aio server) and one with N (default 8, the default setting); h2load (64 connections at c=64,
one at c=1) alternates between them round after round, so a drift of the machine's speed hits both
alike. Per cell: the median round's req/s and p50, the p99, and the mean batch (inferences over
executions, from the model's statistics); the summary gives the N-loop server's median ratio of
throughput over the rounds.

    python benchmarks/grpc_accept_loops.py [--duration 5] [--rounds 5] [--concurrency 1,64]
        [--models tabular,mlp] [--loops 8]

Needs: apt-get install nghttp2-client. Prints a table and writes
benchmarks/results/grpc_accept_loops.json (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from overhead import FEATURES, free_port, grpc_message, run_h2load, running, stats

from inferd.examples import build_repository

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--models", default="tabular,mlp")
    parser.add_argument("--loops", type=int, default=8, help="accept loops of the compared server")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "grpc_accept_loops.json")
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        sys.exit("h2load is not installed: apt-get install nghttp2-client")
    work = Path(tempfile.mkdtemp(prefix="inferd-accept-loops-"))
    repository = work / "models"
    build_repository(repository)
    variants = {"1 loop": 1, f"{args.loops} loops": args.loops}
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, loops in variants.items():
            http, grpc_port = free_port(), free_port()
            command = [sys.executable, "-m", "inferd", "serve", str(repository), "--http-port", str(http),
                       "--grpc-port", str(grpc_port), "--log-level", "warning",
                       "--grpc-accept-loops", str(loops)]  # fmt: skip
            log = work / f"server-{loops}.log"
            stack.enter_context(running(command, f"http://127.0.0.1:{http}/v2/health/ready", log))
            servers[name] = (f"127.0.0.1:{http}", grpc_port)
        for model in args.models.split(","):
            message = grpc_message(model, FEATURES[model])
            for c in (int(c) for c in args.concurrency.split(",")):
                rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
                counts = {name: [0, 0] for name in servers}
                for _ in range(args.rounds):
                    for name, (http, grpc_port) in servers.items():  # alternated, round after round
                        url = f"http://127.0.0.1:{grpc_port}/inference.GRPCInferenceService/ModelInfer"
                        before = stats(http, model)
                        rounds[name].append(run_h2load(url, message, c, int(args.duration), work))
                        after = stats(http, model)
                        counts[name][0] += after[0] - before[0]
                        counts[name][1] += after[1] - before[1]
                for name, results in rounds.items():
                    inferences, executions = counts[name]
                    row = {
                        "model": model,
                        "server": name,
                        "concurrency": c,
                        "requests_per_s": statistics.median(r["rps"] for r in results),
                        "p50_us": statistics.median(r["p50"] for r in results),
                        "p99_us": statistics.median(r["p99"] for r in results),
                        "errors": sum(int(r["errors"]) for r in results),
                        "mean_batch": inferences / executions if executions else None,
                        "rps_rounds": [r["rps"] for r in results],
                    }
                    rows.append(row)
                    batch = row["mean_batch"] or 0.0
                    print(f"{model:8} {name:9} c={c:<3} {row['requests_per_s']:8.0f} req/s  "
                          f"p50 {row['p50_us']:8.0f} us  p99 {row['p99_us']:8.0f} us  "
                          f"batch {batch:5.1f}  errors {row['errors']}", flush=True)  # fmt: skip
    print("\n" + summarize(rows, list(variants)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"duration_s": args.duration, "rounds": args.rounds, "rows": rows}, indent=2)
    )
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


def summarize(rows: list[dict[str, Any]], names: list[str]) -> str:
    """Per model and concurrency: both servers' figures and the median of the per-round ratios."""
    one, many = names
    lines = [
        f"| model | c | {one} req/s | {many} req/s | median round ratio | {one} p50 us | {many} p50 us "
        f"| {one} batch | {many} batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["server"] != one:
            continue
        other = next(
            r
            for r in rows
            if r["server"] == many and (r["model"], r["concurrency"]) == (row["model"], row["concurrency"])
        )
        ratio = statistics.median(
            b / a for a, b in zip(row["rps_rounds"], other["rps_rounds"], strict=True) if a
        )
        lines.append(
            f"| {row['model']} | {row['concurrency']} | {row['requests_per_s']:.0f} "
            f"| {other['requests_per_s']:.0f} "
            f"| {ratio:.2f} | {row['p50_us']:.0f} | {other['p50_us']:.0f} | {row['mean_batch'] or 0:.1f} "
            f"| {other['mean_batch'] or 0:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
