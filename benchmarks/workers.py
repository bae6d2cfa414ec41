"""``inferd serve --workers N``: throughput at c=64 with one process and with N workers, in one run.

For each configuration (plain single process, ``--workers 1``, ``--workers 2`` by default) and each
bundled example model (tabular: 30 features, mlp: 256->1024->1024->10), load at concurrency 64 over
REST JSON (``wrk``) and gRPC (``h2load``, ModelInfer with raw contents), rounds alternating between the
configurations so drift on a shared machine hits them alike; the median round is reported. Also
measured: the server's CPU time per request (every process of the server, from /proc), which with the
cores the server kept busy gives the model of how throughput grows with cores, and the resident
memory of each worker (and of the supervisor).

    python benchmarks/workers.py [--duration 5] [--rounds 3] [--workers plain,1,2] [--models tabular,mlp]

Needs: apt-get install wrk nghttp2-client. Prints a table and writes benchmarks/results/workers.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import (  # noqa: E402  (a sibling script, not a package)
    FEATURES,
    cpu_seconds,
    free_port,
    grpc_message,
    json_body,
    run_h2load,
    run_wrk,
    running,
)

from inferd.examples import build_repository  # noqa: E402

HERE = Path(__file__).resolve().parent
CONCURRENCY = 64


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def server_pids(http: str, supervisor: int, plain: bool) -> list[int]:
    if plain:
        return [supervisor]
    with urllib.request.urlopen(f"http://{http}/workers") as answer:
        return [w["pid"] for w in json.load(answer)["serving"]]


def requests_served(http: str) -> int:
    with urllib.request.urlopen(f"http://{http}/v2/models/stats") as answer:
        return sum(int(m["inference_stats"]["success"]["count"]) for m in json.load(answer)["model_stats"])


def measure(
    config: str, http: str, grpc_port: int, pids: list[int], model: str, duration: int, work: Path
) -> dict[str, dict[str, float]]:
    features = FEATURES[model]
    results = {}
    for protocol in ("rest", "grpc"):
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        served_before = requests_served(http)
        started = time.monotonic()
        if protocol == "rest":
            url = f"http://{http}/v2/models/{model}/infer"
            result = run_wrk(
                url, json_body(features), {"Content-Type": "application/json"}, CONCURRENCY, duration, work
            )
        else:
            url = f"http://127.0.0.1:{grpc_port}/inference.GRPCInferenceService/ModelInfer"
            result = run_h2load(url, grpc_message(model, features), CONCURRENCY, duration, work)
        wall = time.monotonic() - started
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        served = requests_served(http) - served_before
        result["server_cores"] = cpu / wall
        result["cpu_us_per_request"] = 1e6 * cpu / max(1, served)
        results[protocol] = result
        print(
            f"  {config:>9} {model:8} {protocol:4} {result['rps']:9.0f} req/s  "
            f"p50 {result['p50'] / 1e3:6.2f} ms  "
            f"server {result['server_cores']:.2f} cores, {result['cpu_us_per_request']:.0f} µs CPU/req  "
            f"errors {int(result['errors'])}",
            flush=True,
        )
    return results


def measure_or_skip(*args: Any) -> dict[str, dict[str, float]]:
    """One round's cells, or none when the load generator's output could not be read (on a starved
    machine wrk can print no percentile line): that round is left out of the medians, and said so."""
    try:
        return measure(*args)
    except (KeyError, AttributeError, subprocess.CalledProcessError) as exc:
        print(f"  {args[0]} {args[4]}: round skipped, the load generator's output was unreadable ({exc!r})")
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="plain,1,2", help="configurations: plain (no supervisor) or N")
    parser.add_argument("--models", default="tabular,mlp")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "workers.json")
    args = parser.parse_args()
    configs = args.workers.split(",")
    models = args.models.split(",")
    work = Path(tempfile.mkdtemp(prefix="inferd-workers-bench-"))
    repository = work / "models"
    build_repository(repository)
    servers: dict[str, tuple[str, int, list[int], int]] = {}
    raw: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {}
    memory: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        for config in configs:
            http_port, grpc_port = free_port(), free_port()
            command = [
                sys.executable, "-m", "inferd", "serve", str(repository),
                "--http-port", str(http_port), "--grpc-port", str(grpc_port),
                "--model-control", "explicit", *[a for m in models for a in ("--load-model", m)],
            ]  # fmt: skip
            if config != "plain":
                command += ["--workers", config]
            http = f"127.0.0.1:{http_port}"
            process = stack.enter_context(
                running(command, f"http://{http}/v2/health/ready", work / f"{config}.log")
            )
            pids = server_pids(http, process.pid, config == "plain")
            servers[config] = (http, grpc_port, pids, process.pid)
            memory[config] = {f"worker {i}": rss_mib(pid) for i, pid in enumerate(pids)}
            if config != "plain":
                memory[config]["supervisor"] = rss_mib(process.pid)
            print(f"{config}: pids {pids}, RSS MiB {memory[config]}", flush=True)
        for round_index in range(args.rounds):
            print(f"round {round_index + 1}/{args.rounds}", flush=True)
            for model in models:
                order = configs if round_index % 2 == 0 else configs[::-1]
                for config in order:
                    http, grpc_port, pids, _ = servers[config]
                    for protocol, result in measure_or_skip(
                        config, http, grpc_port, pids, model, args.duration, work
                    ).items():
                        raw.setdefault(config, {}).setdefault(model, {}).setdefault(protocol, []).append(
                            result
                        )
    summary = summarize(raw, configs, models)
    print(table(summary, configs, models, memory))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "memory_mib": memory, "rounds": raw}, indent=1))
    print(f"wrote {args.out}")


def summarize(raw: dict[str, Any], configs: list[str], models: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config in configs:
        for model in models:
            for protocol, results in raw.get(config, {}).get(model, {}).items():
                out.setdefault(config, {}).setdefault(model, {})[protocol] = {
                    "rps": statistics.median(r["rps"] for r in results),
                    "rps_rounds": [round(r["rps"]) for r in results],
                    "p50_ms": statistics.median(r["p50"] for r in results) / 1e3,
                    "server_cores": statistics.median(r["server_cores"] for r in results),
                    "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in results),
                    "errors": sum(int(r["errors"]) for r in results),
                }
    return out


def table(summary: dict[str, Any], configs: list[str], models: list[str], memory: dict[str, Any]) -> str:
    base = configs[0]
    lines = [
        "| model | protocol | server | c=64 req/s (median; rounds) | ÷ "
        + base
        + " | p50 ms | server cores busy "
        "| CPU µs/request | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        for protocol in ("rest", "grpc"):
            for config in configs:
                cell = summary.get(config, {}).get(model, {}).get(protocol)
                base_cell = summary.get(base, {}).get(model, {}).get(protocol)
                if cell is None or base_cell is None:
                    continue
                ratio = cell["rps"] / base_cell["rps"]
                name = "plain (1 process)" if config == "plain" else f"--workers {config}"
                rounds = ", ".join(f"{r:,}" for r in cell["rps_rounds"])
                lines.append(
                    f"| {model} | {'REST JSON' if protocol == 'rest' else 'gRPC'} | {name} "
                    f"| {cell['rps']:,.0f} "
                    f"({rounds}) | {ratio:.2f}× | {cell['p50_ms']:.2f} | {cell['server_cores']:.2f} | "
                    f"{cell['cpu_us_per_request']:.0f} | {cell['errors']} |"
                )
    lines.append("")
    lines.append("| server | resident memory (MiB) |")
    lines.append("|---|---|")
    for config in configs:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in memory[config].items())
        lines.append(f"| {'plain' if config == 'plain' else '--workers ' + config} | {parts} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
