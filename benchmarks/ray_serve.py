"""What Ray Serve's proxy costs: the same model served by plain ``inferd serve`` and by inferd inside one
Ray Serve replica (``inferd ray deploy``), through Ray's default proxy and through its HAProxy mode
(RAY_SERVE_ENABLE_HA_PROXY=1), side by side in one run on one single-node Ray cluster.

The model is an ONNX add on FP32 [1, 30] with dynamic batching (1 ms window, 64 rows): the server's
own cost dominates, which is what is compared. For each target: REST JSON and gRPC latency at c=1
(p50, p99) and closed-loop REST throughput at --concurrency, with inferd's own load generator.

    python benchmarks/ray_serve.py                      # 5 s runs
    python benchmarks/ray_serve.py --duration 10 --targets inferd,ray-proxy
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from compare import free_port
from onnx import TensorProto, helper

from inferd.bench.endpoint import Endpoint
from inferd.bench.inputs import InputTensor
from inferd.bench.payloads import grpc_payload, rest_payload
from inferd.bench.percentiles import LatencySummary
from inferd.bench.runner import LoadSpec, probe, run

MODEL = "add"
FEATURES = 30
TARGETS = ("inferd", "ray-proxy", "ray-haproxy")
RESULTS = Path(__file__).parent / "results"


def build_repository(dest: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", FEATURES])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (dest / MODEL / "1").mkdir(parents=True)
    onnx.save(model, dest / MODEL / "1" / "model.onnx")
    (dest / MODEL / "config.yaml").write_text(
        "max_batch_size: 64\ndynamic_batching:\n  max_queue_delay_ms: 1\n"
    )
    return dest


def wait_ready(port: int, timeout_s: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing ready on port {port} after {timeout_s} s")


def measure(http_port: int, grpc_port: int, duration_s: float, concurrency: int) -> dict[str, Any]:
    rows = np.random.default_rng(0).standard_normal((1, FEATURES)).astype(np.float32)
    inputs = [InputTensor("x", "FP32", rows)]
    rest = LoadSpec(
        endpoint=Endpoint("http", "127.0.0.1", http_port),
        model=MODEL,
        version="",
        rest_payload=rest_payload(inputs, "json"),
        grpc_payload=None,
        mode="closed",
        warmup_s=1.0,
        duration_s=duration_s,
        drain_s=5.0,
    )
    grpc = replace(
        rest,
        endpoint=Endpoint("grpc", "127.0.0.1", grpc_port),
        rest_payload=None,
        grpc_payload=grpc_payload(inputs, MODEL, ""),
    )
    for spec in (rest, grpc):
        failure = probe(spec)
        if failure is not None:
            raise RuntimeError(f"probe failed on {spec.endpoint.protocol}: {failure}")
    rest_one = run(replace(rest, concurrency=1))
    grpc_one = run(replace(grpc, concurrency=1))
    rest_many = run(replace(rest, concurrency=concurrency))
    rest_c1, grpc_c1 = LatencySummary.of(rest_one.latencies_s), LatencySummary.of(grpc_one.latencies_s)
    many = LatencySummary.of(rest_many.latencies_s)
    return {
        "rest_c1_p50_ms": rest_c1.percentiles[50.0] * 1e3,
        "rest_c1_p99_ms": rest_c1.percentiles[99.0] * 1e3,
        "grpc_c1_p50_ms": grpc_c1.percentiles[50.0] * 1e3,
        "rest_peak_req_per_s": rest_many.throughput,
        "rest_peak_p99_ms": many.percentiles[99.0] * 1e3,
        "errors": {**rest_one.errors, **grpc_one.errors, **rest_many.errors},
    }


def _env(haproxy: bool) -> dict[str, str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH", "")]))
    if haproxy:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    return env


def run_plain(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "inferd", "serve", str(repo), "--http-port", str(http_port)]
    server = subprocess.Popen(
        [*command, "--grpc-port", str(grpc_port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(http_port)
        return measure(http_port, grpc_port, args.duration, args.concurrency)
    finally:
        server.terminate()
        server.wait(30)


def run_ray(repo: Path, args: argparse.Namespace, haproxy: bool) -> dict[str, Any]:
    ray = str(Path(sys.executable).with_name("ray"))
    env = _env(haproxy)
    gcs, http_port, grpc_port = free_port(), free_port(), free_port()
    start = [ray, "start", "--head", "--port", str(gcs), "--num-cpus", "2", "--include-dashboard=false"]
    subprocess.run([*start, "--disable-usage-stats"], check=True, env=env, capture_output=True)
    try:
        deploy = [sys.executable, "-m", "inferd", "ray", "deploy", str(repo), "--address", f"127.0.0.1:{gcs}"]
        deploy += ["--http-port", str(http_port), "--grpc-port", str(grpc_port), "--replicas", "1"]
        subprocess.run(deploy, check=True, env=env, capture_output=True, timeout=600)
        wait_ready(http_port)
        return measure(http_port, grpc_port, args.duration, args.concurrency)
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_repository(Path(tmp))
        for target in args.targets.split(","):
            print(f"{target} ...", file=sys.stderr, flush=True)
            try:
                if target == "inferd":
                    results[target] = run_plain(repo, args)
                elif target in ("ray-proxy", "ray-haproxy"):
                    results[target] = run_ray(repo, args, haproxy=target == "ray-haproxy")
                else:
                    raise SystemExit(f"unknown target {target}; known: {', '.join(TARGETS)}")
            except (RuntimeError, subprocess.SubprocessError) as exc:
                results[target] = {"failed": str(exc)[:300]}
    base = results.get("inferd", {})
    print(f"{'target':<12} {'REST c=1 p50':>13} {'p99':>8} {'gRPC c=1 p50':>13}", end="")
    print(f" {'REST req/s':>11} {'vs inferd':>10}")
    for target, row in results.items():
        if "failed" in row:
            print(f"{target:<12} failed: {row['failed']}")
            continue
        ratio = (
            row["rest_peak_req_per_s"] / base["rest_peak_req_per_s"] if "rest_peak_req_per_s" in base else 0
        )
        print(
            f"{target:<12} {row['rest_c1_p50_ms']:>10.2f} ms {row['rest_c1_p99_ms']:>5.1f} ms"
            f" {row['grpc_c1_p50_ms']:>10.2f} ms {row['rest_peak_req_per_s']:>11.0f} {ratio:>9.2f}x"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ray_serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": platform.node(), "args": vars(args), "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
