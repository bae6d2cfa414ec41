"""A trivial Python model (identity on FP32 [1, 30]) served by inferd and by its peers, side by side.

One invocation starts each server in turn on 127.0.0.1, drives it with inferd's own load generator
(inferd.bench, REST JSON, batch-1 requests) and prints one table, then writes JSON to
benchmarks/results/. Targets, all serving the same identity with at most 64 rows per execution and a
1 ms batching window (--batch-delay-ms), one model instance:

- inferd-onnx:    the identity as an ONNX graph (Identity op), ONNX Runtime, intra-op threads 1;
- inferd-python:  benchmarks/models/identity.py, an ``inferd.Model`` (the thing measured);
- triton-python:  real Triton (tritonserver 2.51 from the ``nvidia-pytriton`` wheel) with its Python
                  backend running benchmarks/peers/triton_identity.py, Triton's dynamic batcher
                  (max_queue_delay_microseconds = the same window), KIND_CPU count 1;
- pytriton:       the same Triton through PyTriton: a Python callable with ``@batch``
                  (benchmarks/peers/pytriton_identity.py), Triton's dynamic batcher, same window;
- litserve:       benchmarks/peers/litserve_identity.py, a LitAPI with LitServe's batching, 1 worker;
- mlserver:       benchmarks/peers/mlserver_identity.py, an MLModel with adaptive batching.

For each: single-stream (c=1) latency percentiles and closed-loop throughput at --concurrency (64),
plus the server's mean rows per execution where it serves the statistics extension (inferd, Triton),
the CPU its whole process group used at c=64 (cores, and per request: the fair figure on a shared
machine, where a many-threaded server takes a larger share of a busy CPU than one event loop), and for
inferd's targets one batch-1 call of the runtime alone, in process. --rounds N cycles through the
targets N times; the table shows medians and each round.
Peers install into their own virtual environments under --cache-dir, as benchmarks/compare.py does
(the same directory by default, so its venvs are reused). The issue-10 targets the table checks:
inferd-python >= 80 % of inferd-onnx's req/s at c=64 and its c=1 p50 within 30 us of it; >= 5x
LitServe's and >= 3x Triton's req/s at c=64; MLServer is for reference.

    python benchmarks/python_models.py --rounds 2                # every target twice, 10 s runs
    python benchmarks/python_models.py --targets inferd-onnx,inferd-python --duration 1 --warmup 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import timeit
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from compare import free_port, peer_python, peer_versions, running
from onnx import TensorProto, helper

from inferd.bench.endpoint import Endpoint
from inferd.bench.inputs import InputTensor
from inferd.bench.payloads import rest_payload
from inferd.bench.percentiles import LatencySummary
from inferd.bench.runner import LoadSpec, probe, run
from inferd.bench.serverstats import split

HERE = Path(__file__).resolve().parent
MODEL = "identity"
FEATURES = 30
MAX_BATCH = 64
TARGETS = ("inferd-onnx", "inferd-python", "triton-python", "pytriton", "litserve", "mlserver")
# Issue 10: inferd-python's req/s at c=64 must be at least this many times the peer's.
TARGETS_CHECKED = {"litserve": 5.0, "triton-python": 3.0, "pytriton": 3.0}


@dataclass(frozen=True)
class Settings:
    duration_s: float
    warmup_s: float
    concurrency: int
    batch_delay_s: float


def identity_onnx(path: Path) -> None:
    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        MODEL,
        [tensor("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [tensor("y", TensorProto.FLOAT, ["batch", FEATURES])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def runtime_call_us(repo: Path) -> float:
    """One batch-1 execution through the inferd runtime alone (in this process, best of 5 x 20,000):
    what the runtime adds to a request, free of the network and of the machine's other load."""
    from inferd.model_config import OnnxRuntimeOptions
    from inferd.runtimes.base import RuntimeSettings
    from inferd.runtimes.onnx import OnnxRuntime
    from inferd.runtimes.python import PythonRuntime

    version, runtime_settings = repo / MODEL / "1", RuntimeSettings(max_batch_size=MAX_BATCH)
    runtime: OnnxRuntime | PythonRuntime
    if (version / "model.onnx").exists():
        options = OnnxRuntimeOptions(intra_op_threads=1, inter_op_threads=1)
        runtime = OnnxRuntime(version / "model.onnx", runtime_settings, options)
    else:
        runtime = PythonRuntime(version / "model.py", runtime_settings)
    inputs = {"x": np.zeros((1, FEATURES), np.float32)}
    try:
        return min(timeit.repeat(lambda: runtime.run(0, inputs), number=20_000, repeat=5)) / 20_000 * 1e6
    finally:
        runtime.close()


def inferd_repository(dest: Path, kind: str, settings: Settings) -> Path:
    version = dest / MODEL / "1"
    version.mkdir(parents=True)
    delay_ms = settings.batch_delay_s * 1e3
    config = f"max_batch_size: {MAX_BATCH}\ninstances: 1\n"
    config += f"dynamic_batching:\n  max_queue_delay_ms: {delay_ms:g}\n"
    if kind == "onnx":
        identity_onnx(version / "model.onnx")
        config += "onnxruntime:\n  intra_op_threads: 1\n  inter_op_threads: 1\n  allow_spinning: false\n"
    else:
        shutil.copy(HERE / "models" / "identity.py", version / "model.py")
        config += "platform: python\n"
    (dest / MODEL / "config.yaml").write_text(config)
    return dest


def triton_repository(dest: Path, settings: Settings) -> Path:
    (dest / MODEL / "1").mkdir(parents=True)
    shutil.copy(HERE / "peers" / "triton_identity.py", dest / MODEL / "1" / "model.py")
    (dest / MODEL / "config.pbtxt").write_text(
        f'name: "{MODEL}"\nbackend: "python"\nmax_batch_size: {MAX_BATCH}\n'
        f'input [{{ name: "x", data_type: TYPE_FP32, dims: [{FEATURES}] }}]\n'
        f'output [{{ name: "y", data_type: TYPE_FP32, dims: [{FEATURES}] }}]\n'
        f"dynamic_batching {{ max_queue_delay_microseconds: {round(settings.batch_delay_s * 1e6)} }}\n"
        "instance_group [{ kind: KIND_CPU, count: 1 }]\n"
    )
    return dest


def triton_backends(python: Path, dest: Path) -> tuple[Path, Path, Path]:
    """tritonserver, a backend directory holding the Python backend with the stub built for the venv's
    Python, and the wheel's shared libraries: what PyTriton itself prepares before starting Triton."""
    code = "import pytriton, sys; print(pytriton.__path__[0], '%d.%d' % sys.version_info[:2])"
    package, version = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    dist = Path(package) / "tritonserver"
    backend = dest / "python"
    shutil.copytree(dist / "backends" / "python", backend)
    shutil.copy(dist / "python_backend_stubs" / version / "triton_python_backend_stub", backend)
    return dist / "bin" / "tritonserver", dest, Path(package).parent / "nvidia_pytriton.libs"


def server_cpu_s(group: int) -> float:
    """CPU seconds used so far by every live process of the server's process group (its workers and
    Triton's backend stubs included): the servers start in a session of their own."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group:  # pgrp; then utime and stime are fields 14 and 15 of stat(5)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def read_stats(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{MODEL}/stats", timeout=5) as reply:
            return dict(json.load(reply)["model_stats"][0])
    except (OSError, KeyError, IndexError):
        return None


def measure(port: int, group: int, settings: Settings, stats: bool) -> dict[str, Any]:
    rows = np.random.default_rng(0).standard_normal((1, FEATURES)).astype(np.float32)
    spec = LoadSpec(
        endpoint=Endpoint("http", "127.0.0.1", port),
        model=MODEL,
        version="",
        rest_payload=rest_payload([InputTensor("x", "FP32", rows)], "json"),
        grpc_payload=None,
        mode="closed",
        warmup_s=settings.warmup_s,
        duration_s=settings.duration_s,
        drain_s=5.0,
    )
    failure = probe(spec)
    if failure is not None:
        raise RuntimeError(f"probe request failed: {failure}")
    single = run(replace(spec, concurrency=1))
    before = read_stats(port) if stats else None
    cpu = server_cpu_s(group)
    peak = run(replace(spec, concurrency=settings.concurrency))
    # Over the whole run, warm-up included: per request, divided by the answers the window's rate
    # gives over warm-up + window (an estimate; what matters is that every server is measured alike).
    cpu = server_cpu_s(group) - cpu
    server = split(before, read_stats(port)) if before else None
    one, many = LatencySummary.of(single.latencies_s), LatencySummary.of(peak.latencies_s)
    return {
        "c1_p50_us": one.percentiles[50.0] * 1e6,
        "c1_p99_us": one.percentiles[99.0] * 1e6,
        "c1_req_per_s": single.throughput,
        "peak_req_per_s": peak.throughput,
        "peak_p50_ms": many.percentiles[50.0] * 1e3,
        "peak_p99_ms": many.percentiles[99.0] * 1e3,
        # Rows per execution while at peak (includes the warm-up: the statistics are cumulative).
        "peak_rows_per_execution": server.inferences / server.executions
        if server and server.executions
        else None,
        "peak_server_cpu_cores": cpu / (peak.generator_wall_s or 1.0),
        "peak_server_cpu_us_per_req": cpu
        * 1e6
        / max(peak.throughput * (settings.warmup_s + settings.duration_s), 1),
        "errors": {**single.errors, **peak.errors},
        "generator_cpu_cores_at_peak": peak.generator_cpu_s / peak.generator_wall_s,
    }


def run_target(
    target: str, settings: Settings, work: Path, cache: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The target's figures and how it was configured."""
    log = work / f"{target}.log"
    window = f"max batch {MAX_BATCH}, window {settings.batch_delay_s * 1e3:g} ms, 1 instance"
    if target.startswith("inferd"):
        repo = inferd_repository(work / f"repo-{target}", target.removeprefix("inferd-"), settings)
        port = free_port()
        command = [sys.executable, "-m", "inferd", "serve", str(repo), "--http-port", str(port),
                   "--grpc-port", "0", "--log-level", "warning"]  # fmt: skip
        with running(command, f"http://127.0.0.1:{port}/v2/health/ready", log, Path.cwd()) as server:
            figures = measure(port, server.pid, settings, stats=True)
        figures["runtime_call_us"] = runtime_call_us(repo)
        return figures, {"config": window, "python": platform.python_version()}
    if target == "triton-python":
        python = peer_python(cache, "pytriton")
        tritonserver, backends, libs = triton_backends(python, work / "triton-backends")
        repo = triton_repository(work / "repo-triton", settings)
        port = free_port()
        env = {
            **os.environ,
            # The Python backend's stub embeds the venv's Python: its libpython, and its bin first on PATH
            # so the stub finds that environment's site-packages (numpy), as PyTriton arranges it.
            "LD_LIBRARY_PATH": f"{sysconfig.get_config_var('LIBDIR')}:{libs}",
            "PATH": f"{python.parent}:{os.environ['PATH']}",
        }
        command = [str(tritonserver), "--model-repository", str(repo), "--backend-directory", str(backends),
                   "--http-address", "127.0.0.1", "--http-port", str(port), "--allow-grpc", "false",
                   "--allow-metrics", "false", "--log-verbose", "0"]  # fmt: skip
        with running(command, f"http://127.0.0.1:{port}/v2/health/ready", log, work, env) as server:
            figures = measure(port, server.pid, settings, stats=True)
        versions = peer_versions(python, ["nvidia-pytriton"])
        return figures, {**versions, "tritonserver": "2.51 (bundled)", "config": f"Python backend, {window}"}
    if target == "pytriton":
        python = peer_python(cache, "pytriton")
        port = free_port()
        env = {**os.environ, "LD_LIBRARY_PATH": str(sysconfig.get_config_var("LIBDIR"))}
        delay_us = round(settings.batch_delay_s * 1e6)
        command = [str(python), str(HERE / "peers" / "pytriton_identity.py"), MODEL, str(port),
                   str(free_port()), str(free_port()), str(MAX_BATCH), str(delay_us)]  # fmt: skip
        # PyTriton starts Triton first and binds the model after: wait for the model, not the server.
        with running(command, f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready", log, work, env) as server:
            figures = measure(port, server.pid, settings, stats=True)
        config = f"Python callable with @batch (PyTriton's proxy backend), {window}"
        return figures, {
            **peer_versions(python, ["nvidia-pytriton"]),
            "tritonserver": "2.51 (bundled)",
            "config": config,
        }
    if target == "litserve":
        python = peer_python(cache, "litserve")
        port = free_port()
        command = [str(python), str(HERE / "peers" / "litserve_identity.py"), MODEL, str(port),
                   str(MAX_BATCH), str(settings.batch_delay_s)]  # fmt: skip
        with running(command, f"http://127.0.0.1:{port}/health", log, work) as server:
            figures = measure(port, server.pid, settings, stats=False)
        return figures, {**peer_versions(python, ["litserve"]), "config": f"LitAPI batching, {window}"}
    python = peer_python(cache, "mlserver")
    repo = work / "repo-mlserver"
    (repo / MODEL).mkdir(parents=True)
    shutil.copy(HERE / "peers" / "mlserver_identity.py", repo / "mlserver_identity.py")
    port = free_port()
    (repo / "settings.json").write_text(json.dumps(
        {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1"}
    ))  # fmt: skip
    (repo / MODEL / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_identity.IdentityModel",
        "max_batch_size": MAX_BATCH, "max_batch_time": settings.batch_delay_s,
    }))  # fmt: skip
    command = [str(python.parent / "mlserver"), "start", str(repo)]
    with running(command, f"http://127.0.0.1:{port}/v2/health/ready", log, repo) as server:
        figures = measure(port, server.pid, settings, stats=False)
    return figures, {**peer_versions(python, ["mlserver"]), "config": f"adaptive batching, {window}"}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (a target that failed keeps its error)."""
    done = [r for r in runs if "error" not in r]
    if not done:
        return runs[-1]
    keys = ("c1_p50_us", "c1_p99_us", "c1_req_per_s", "peak_req_per_s", "peak_p50_ms", "peak_p99_ms",
            "peak_server_cpu_cores", "peak_server_cpu_us_per_req", "runtime_call_us")  # fmt: skip
    summary: dict[str, Any] = {k: float(np.median([r[k] for r in done])) for k in keys if k in done[0]}
    batches = [r["peak_rows_per_execution"] for r in done if r["peak_rows_per_execution"] is not None]
    summary["peak_rows_per_execution"] = float(np.median(batches)) if batches else None
    summary["peak_req_per_s_rounds"] = [round(r["peak_req_per_s"]) for r in done]
    summary["c1_p50_us_rounds"] = [round(r["c1_p50_us"]) for r in done]
    return summary


def verdicts(results: dict[str, dict[str, Any]]) -> list[str]:
    """The issue-10 targets, each with its figure and whether it was met."""
    python = results.get("inferd-python")
    if not python or "error" in python:
        return []
    lines = []
    onnx_figures = results.get("inferd-onnx")
    if onnx_figures and "error" not in onnx_figures:
        share = python["peak_req_per_s"] / onnx_figures["peak_req_per_s"]
        extra = python["c1_p50_us"] - onnx_figures["c1_p50_us"]
        lines.append(f"inferd-python / inferd-onnx req/s at c=64: {share:.0%} (target >= 80%: "
                     f"{'met' if share >= 0.8 else 'MISSED'})")  # fmt: skip
        lines.append(f"inferd-python c=1 p50 - inferd-onnx c=1 p50: {extra:+.0f} us (target <= 30 us: "
                     f"{'met' if extra <= 30 else 'MISSED'})")  # fmt: skip
    for peer in ("litserve", "triton-python", "mlserver"):
        other = results.get(peer)
        if other and "error" not in other:
            times = python["peak_req_per_s"] / other["peak_req_per_s"]
            goal = TARGETS_CHECKED.get(peer)
            said = f"target >= {goal:g}x: {'met' if times >= goal else 'MISSED'}" if goal else "reference"
            lines.append(f"inferd-python / {peer} req/s at c=64: {times:.1f}x ({said})")
            cost = other["peak_server_cpu_us_per_req"] / python["peak_server_cpu_us_per_req"]
            lines.append(f"{peer} / inferd-python server CPU per request at c=64: {cost:.1f}x")
    return lines


def markdown(document: dict[str, Any]) -> str:
    c = document["settings"]["concurrency"]
    lines = [
        f"| target | c=1 p50 us | c=1 p99 us | c={c} req/s | c={c} p50 ms | c={c} p99 ms | rows/exec | "
        f"server CPU cores / us per req at c={c} | "
        f"inferd-python's req/s ÷ this | c={c} req/s per round | c=1 p50 us per round |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    python = document["results"].get("inferd-python", {})
    for target, r in document["results"].items():
        if "error" in r:
            lines.append(f"| {target} | failed: {r['error'][:100]} | | | | | | | | | |")
            continue
        rows = f"{r['peak_rows_per_execution']:.1f}" if r.get("peak_rows_per_execution") else "-"
        ratio = f"{python['peak_req_per_s'] / r['peak_req_per_s']:.2f}" if "peak_req_per_s" in python else "-"
        lines.append(
            f"| {target} | {r['c1_p50_us']:.0f} | {r['c1_p99_us']:.0f} | {r['peak_req_per_s']:,.0f} | "
            f"{r['peak_p50_ms']:.2f} | {r['peak_p99_ms']:.2f} | {rows} | "
            f"{r['peak_server_cpu_cores']:.2f} / {r['peak_server_cpu_us_per_req']:.0f} | {ratio} | "
            f"{', '.join(f'{x:,}' for x in r['peak_req_per_s_rounds'])} | "
            f"{', '.join(map(str, r['c1_p50_us_rounds']))} |"
        )
    return "\n".join([*lines, "", *(f"- {line}" for line in verdicts(document["results"]))]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "inferd-compare")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="cycle through the targets this many times")
    parser.add_argument("--batch-delay-ms", type=float, default=1.0, help="every server's batching window")
    parser.add_argument("--out-json", type=Path, help="default: benchmarks/results/python_models-<time>.json")
    args = parser.parse_args()
    settings = Settings(args.duration, args.warmup, args.concurrency, args.batch_delay_ms / 1e3)
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        sys.exit(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    started = time.gmtime()
    document: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", started),
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "settings": {
            **settings.__dict__,
            "max_batch": MAX_BATCH,
            "encoding": "REST JSON",
            "features": FEATURES,
        },
        "results": {},
        "targets": {},
    }
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for number in range(1, args.rounds + 1):
        for target in targets:
            if rounds[target] and "error" in rounds[target][-1]:
                continue
            print(f"== round {number}: {target}", flush=True)
            with tempfile.TemporaryDirectory(prefix="inferd-pymodels-") as tmp:
                try:
                    figures, config = run_target(target, settings, Path(tmp), args.cache_dir)
                except Exception as exc:  # one failing peer must not lose the others' results
                    print(f"  failed: {exc}", flush=True)
                    rounds[target].append({"error": str(exc)})
                    continue
            print(f"  {figures}", flush=True)
            rounds[target].append(figures)
            document["targets"][target] = config
    document["rounds"] = rounds
    document["results"] = {t: median_of(r) for t, r in rounds.items()}
    document["verdicts"] = verdicts(document["results"])
    out = args.out_json or HERE / "results" / f"python_models-{time.strftime('%Y%m%dT%H%M%SZ', started)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(markdown(document))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
