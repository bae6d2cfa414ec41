"""Side-by-side: raw in-process ONNX Runtime vs inferd vs MLServer and LitServe, same models and load.

One invocation builds the example models (mlp, tabular), installs each peer into its own virtual
environment under --cache-dir (reused on later runs), starts each server in turn on 127.0.0.1 and
drives it with inferd's own bench client (inferd.bench), then writes JSON and a markdown table.

For every target and model it measures:
- single-stream p50/p99 (closed loop, one request at a time, batch 1);
- peak throughput (closed loop, --concurrency requests in flight, batch-1 requests);
- max QPS whose p99 stays under --slo-p99-ms (SLO search over open-loop Poisson runs).

Every server runs ORT with the same settings: intra-op threads = --threads, inter-op 1, spinning off,
CPU provider, one model instance. Servers that batch use at most 32 rows and wait at most 1 ms:
inferd (max_batch_size 32, max_queue_delay_ms 1), MLServer with adaptive batching (max_batch_size 32,
max_batch_time 0.001) and LitServe (max_batch_size 32, batch_timeout 0.001). MLServer runs with its
defaults otherwise (parallel_workers 1: the model in one worker process). LitServe: one worker,
accelerator cpu. The raw ORT row runs session.run in this process: batch 1 for single-stream, batch 32
for peak throughput (rows/s), no SLO row. Peers are driven over REST JSON (neither takes inferd's
binary extension as configured here); inferd also over REST binary and gRPC.

    python benchmarks/compare.py --short            # mlp only, 2 s runs, coarse SLO search
    python benchmarks/compare.py --duration 20      # the full record
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inferd.bench.endpoint import Endpoint
from inferd.bench.inputs import InputTensor
from inferd.bench.payloads import grpc_payload, rest_payload
from inferd.bench.percentiles import LatencySummary, percentile_with_failures
from inferd.bench.runner import LoadSpec, probe, run
from inferd.bench.slo import Probe, search
from inferd.examples import build_mlp, build_tabular

HERE = Path(__file__).resolve().parent
MAX_BATCH = 32
BATCH_DELAY_S = 0.001
PEER_PACKAGES = {
    # MLServer 1.7.1's worker processes call asyncio.get_event_loop() with no loop set, which uvloop
    # 0.22 and later turn into an error (the workers die and no model loads): keep an older uvloop.
    "mlserver": ["mlserver==1.7.1", "uvloop<0.22", f"onnxruntime=={ort.__version__}"],
    "litserve": ["litserve==0.2.19", f"onnxruntime=={ort.__version__}"],
    # Real Triton: the wheel bundles tritonserver 2.51 and its Python backend (benchmarks/python_models.py).
    "pytriton": ["nvidia-pytriton==0.7.0"],
}
MODELS: dict[str, Callable[[Path], None]] = {"mlp": build_mlp, "tabular": build_tabular}
TARGETS = (
    "ort",
    "inferd-rest-binary",
    "inferd-rest-json",
    "inferd-grpc",
    "mlserver",
    "mlserver-batching",
    "litserve-batching",
)


@dataclass(frozen=True)
class Settings:
    duration_s: float
    warmup_s: float
    concurrency: int
    slo_s: float
    slo_tolerance: float
    slo_probes: int
    threads: int


def free_port() -> int:
    # The peers take ports on their command line, so pick one; a race with another process is possible
    # but harmless here (the server then fails to start and the run reports it).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not ready at {url} after {timeout_s} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running(
    command: list[str],
    ready_url: str | Callable[[], str],
    log: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )
    try:
        url = ready_url if isinstance(ready_url, str) else None
        if url is None:
            deadline = time.monotonic() + 60
            while True:
                try:
                    url = ready_url()  # type: ignore[operator]
                    break
                except FileNotFoundError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(log.read_text()[-3000:]) from None
                    time.sleep(0.1)
        wait_http(url, process, log)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the peers start worker processes of their own
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def peer_python(cache: Path, peer: str, extra: tuple[str, ...] = ()) -> Path:
    """The peer's venv interpreter, creating the venv and installing the peer (and ``extra``
    requirements, e.g. ``tokenizers==X`` for the text-embedding peers) on first use."""
    venv = cache / peer
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    installed = marker.read_text().split() if marker.exists() else []
    missing = [p for p in (*PEER_PACKAGES[peer], *extra) if p not in installed]
    if missing:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *missing], check=True)
        marker.write_text(" ".join([*installed, *missing]))
    return python


def peer_versions(python: Path, packages: list[str]) -> dict[str, str]:
    code = "import importlib.metadata as m, sys; print({p: m.version(p) for p in sys.argv[1:]})"
    out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True)
    return dict(eval(out.stdout))  # noqa: S307 - our own one-line dict literal


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def model_inputs(path: Path, rows: int) -> list[InputTensor]:
    rng = np.random.default_rng(0)
    tensors = []
    for spec in session(path, 1).get_inputs():
        assert spec.type == "tensor(float)", "the compared models take FP32"
        shape = (rows, *[int(d) for d in spec.shape[1:]])
        tensors.append(InputTensor(spec.name, "FP32", rng.standard_normal(shape).astype(np.float32)))
    return tensors


def measure_ort(path: Path, settings: Settings) -> dict[str, Any]:
    """session.run in this process: the floor under any server's latency and its throughput ceiling."""
    sess = session(path, settings.threads)
    one = {t.name: t.data for t in model_inputs(path, 1)}
    full = {t.name: t.data for t in model_inputs(path, MAX_BATCH)}

    def loop(feeds: dict[str, np.ndarray], seconds: float) -> list[float]:
        times = []
        end = time.perf_counter() + seconds
        while (start := time.perf_counter()) < end:
            sess.run(None, feeds)
            times.append(time.perf_counter() - start)
        return times

    loop(one, settings.warmup_s)
    latency = LatencySummary.of(loop(one, settings.duration_s))
    batch_times = loop(full, settings.duration_s)
    return {
        "single_stream_p50_ms": latency.percentiles[50.0] * 1e3,
        "single_stream_p99_ms": latency.percentiles[99.0] * 1e3,
        "peak_inferences_per_s": MAX_BATCH * len(batch_times) / sum(batch_times),
        "peak_note": f"batch {MAX_BATCH} in-process",
        "slo_max_rate": None,
    }


def measure_server(spec: LoadSpec, settings: Settings) -> dict[str, Any]:
    failure = probe(spec)
    if failure is not None:
        raise RuntimeError(f"probe request failed: {failure}")
    single = run(replace(spec, mode="closed", concurrency=1))
    peak = run(replace(spec, mode="closed", concurrency=settings.concurrency))
    single_latency = LatencySummary.of(single.latencies_s)

    def measure(rate: float) -> Probe[None]:
        result = run(replace(spec, mode="open", rate=rate))
        latency = percentile_with_failures(result.latencies_s, sum(result.errors.values()), 99)
        goodput = float(np.count_nonzero(result.latencies_s <= settings.slo_s)) / result.window_s
        return Probe(rate, latency, goodput, None)

    found = search(
        measure, settings.slo_s, 99, max(single.throughput, 1.0),
        tolerance=settings.slo_tolerance, max_probes=settings.slo_probes,
    )  # fmt: skip
    best = found.best
    return {
        "single_stream_p50_ms": single_latency.percentiles[50.0] * 1e3,
        "single_stream_p99_ms": single_latency.percentiles[99.0] * 1e3,
        "peak_inferences_per_s": peak.throughput,
        "peak_note": f"c={settings.concurrency}",
        "peak_p99_ms": LatencySummary.of(peak.latencies_s).percentiles[99.0] * 1e3,
        "errors": {**single.errors, **peak.errors},
        "generator_cpu_cores_at_peak": peak.generator_cpu_s / peak.generator_wall_s,
        "slo_max_rate": best.rate if best else None,
        "slo_goodput": best.goodput if best else None,
        "slo_probes": [(p.rate, p.latency_s * 1e3) for p in found.probes],
    }


def inferd_repository(models: dict[str, Path], dest: Path, threads: int) -> Path:
    for name, path in models.items():
        (dest / name / "1").mkdir(parents=True)
        shutil.copy(path, dest / name / "1" / "model.onnx")
        (dest / name / "config.yaml").write_text(
            f"max_batch_size: {MAX_BATCH}\ndynamic_batching:\n  max_queue_delay_ms: {BATCH_DELAY_S * 1e3:g}\n"
            f"instances: 1\nonnxruntime:\n  intra_op_threads: {threads}\n  inter_op_threads: 1\n"
            "  allow_spinning: false\n"
        )
    return dest


def mlserver_repository(
    models: dict[str, Path], dest: Path, threads: int, batching: bool, ports: tuple[int, int, int]
) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(HERE / "peers" / "mlserver_ort.py", dest / "mlserver_ort.py")
    http, grpc, metrics = ports
    (dest / "settings.json").write_text(
        json.dumps({"http_port": http, "grpc_port": grpc, "metrics_port": metrics, "host": "127.0.0.1"})
    )
    for name, path in models.items():
        settings: dict[str, Any] = {
            "name": name,
            "implementation": "mlserver_ort.OrtModel",
            "parameters": {"uri": str(path), "extra": {"intra_op_threads": threads}},
        }
        if batching:
            settings.update({"max_batch_size": MAX_BATCH, "max_batch_time": BATCH_DELAY_S})
        (dest / name).mkdir()
        (dest / name / "model-settings.json").write_text(json.dumps(settings))
    return dest


def base_spec(endpoint: Endpoint, model: str, path: Path, settings: Settings, encoding: str) -> LoadSpec:
    tensors = model_inputs(path, 1)
    return LoadSpec(
        endpoint=endpoint,
        model=model,
        version="",
        rest_payload=rest_payload(tensors, encoding) if endpoint.protocol == "http" else None,  # type: ignore[arg-type]
        grpc_payload=grpc_payload(tensors, model, "") if endpoint.protocol == "grpc" else None,
        mode="closed",
        warmup_s=settings.warmup_s,
        duration_s=settings.duration_s,
        drain_s=5.0,
    )


def run_target(
    target: str,
    models: dict[str, Path],
    settings: Settings,
    work: Path,
    cache: Path,
    log: Callable[[str], None],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Results per model for one target, plus how it was configured."""
    results: dict[str, dict[str, Any]] = {}
    if target == "ort":
        for name, path in models.items():
            results[name] = measure_ort(path, settings)
            log(f"  {name}: {results[name]}")
        return results, {"onnxruntime": ort.__version__, "threads": settings.threads}
    if target.startswith("inferd"):
        repo = inferd_repository(models, work / f"repo-{target}", settings.threads)
        port_file = work / f"ports-{target}.json"
        command = [sys.executable, "-m", "inferd", "serve", str(repo), "--http-port", "0", "--grpc-port", "0",
                   "--port-file", str(port_file), "--log-level", "warning"]  # fmt: skip

        def ready() -> str:
            ports = json.loads(port_file.read_text())
            return f"http://127.0.0.1:{ports['http']}/v2/health/ready"

        with running(command, ready, work / f"{target}.log", Path.cwd()):
            ports = json.loads(port_file.read_text())
            protocol = "grpc" if target == "inferd-grpc" else "http"
            endpoint = Endpoint(protocol, "127.0.0.1", ports[protocol])  # type: ignore[arg-type]
            encoding = "json" if target == "inferd-rest-json" else "binary"
            for name, path in models.items():
                results[name] = measure_server(base_spec(endpoint, name, path, settings, encoding), settings)
                log(f"  {name}: {results[name]}")
        return results, {
            "config": f"max_batch_size {MAX_BATCH}, max_queue_delay_ms 1, 1 instance, "
            f"intra_op_threads {settings.threads}, spinning off",
            "protocol": protocol,
        }
    peer = target.split("-")[0]
    python = peer_python(cache, peer)
    versions = peer_versions(python, [peer, "onnxruntime"])
    http = free_port()
    if peer == "mlserver":
        ports = (http, free_port(), free_port())
        batching = target.endswith("batching")
        repo = mlserver_repository(models, work / f"repo-{target}", settings.threads, batching, ports)
        command = [str(python.parent / "mlserver"), "start", str(repo)]
        config = "custom runtime benchmarks/peers/mlserver_ort.py, parallel_workers default (1), " + (
            f"adaptive batching max_batch_size {MAX_BATCH} max_batch_time {BATCH_DELAY_S}"
            if batching
            else "no batching"
        )
        with running(command, f"http://127.0.0.1:{http}/v2/health/ready", work / f"{target}.log", repo):
            for name, path in models.items():
                spec = base_spec(Endpoint("http", "127.0.0.1", http), name, path, settings, "json")
                results[name] = measure_server(spec, settings)
                log(f"  {name}: {results[name]}")
        return results, {**versions, "config": config, "protocol": "REST JSON"}
    # LitServe serves one API per server: one server per model.
    for name, path in models.items():
        http = free_port()
        command = [str(python), str(HERE / "peers" / "litserve_ort.py"), str(path), name, str(http),
                   str(settings.threads), str(MAX_BATCH), str(BATCH_DELAY_S)]  # fmt: skip
        with running(command, f"http://127.0.0.1:{http}/health", work / f"{target}-{name}.log", work):
            spec = base_spec(Endpoint("http", "127.0.0.1", http), name, path, settings, "json")
            results[name] = measure_server(spec, settings)
            log(f"  {name}: {results[name]}")
    config = (f"LitAPI benchmarks/peers/litserve_ort.py, max_batch_size {MAX_BATCH}, batch_timeout "
              f"{BATCH_DELAY_S}, workers_per_device 1, accelerator cpu")  # fmt: skip
    return results, {**versions, "config": config, "protocol": "REST JSON (V2 body at /v2/models/NAME/infer)"}


def markdown(document: dict[str, Any]) -> str:
    lines = []
    slo_ms = document["settings"]["slo_s"] * 1e3
    for model in document["models"]:
        lines += [
            f"#### {model}",
            "",
            f"| target | single-stream p50 ms | p99 ms | peak infer/s | max QPS at p99 <= {slo_ms:g} ms |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for target, per_model in document["results"].items():
            if "error" in per_model:
                lines.append(f"| {target} | failed: {per_model['error'][:80]} | | | |")
                continue
            r = per_model[model]
            slo = f"{r['slo_max_rate']:.0f}" if r.get("slo_max_rate") else "-"
            lines.append(
                f"| {target} | {r['single_stream_p50_ms']:.3f} | {r['single_stream_p99_ms']:.3f} | "
                f"{r['peak_inferences_per_s']:.0f} ({r['peak_note']}) | {slo} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(document: dict[str, Any], path: Path) -> None:
    """Bars per model: single-stream p50 and peak inferences/s for every target that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = document["models"]
    figure, axes = plt.subplots(len(models), 2, figsize=(11, 3.5 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        done = {t: r[model] for t, r in document["results"].items() if "error" not in r and model in r}
        names = list(done)
        axes[row][0].barh(names, [done[t]["single_stream_p50_ms"] for t in names])
        axes[row][0].set_xlabel("single-stream p50 latency (ms), lower is better")
        axes[row][1].barh(names, [done[t]["peak_inferences_per_s"] for t in names])
        axes[row][1].set_xlabel("peak inferences/s, higher is better")
        axes[row][0].set_title(model, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "inferd-compare")
    parser.add_argument("--models", default="mlp,tabular")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slo-p99-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads for every target")
    parser.add_argument("--short", action="store_true", help="mlp only, 2 s runs, coarse SLO search")
    parser.add_argument("--out-json", type=Path, default=Path("compare-results.json"))
    parser.add_argument("--out-md", type=Path, default=Path("compare-results.md"))
    parser.add_argument("--out-png", type=Path, help="bar charts of the results (needs matplotlib)")
    args = parser.parse_args()
    if args.short:
        args.models, args.duration, args.warmup = "mlp", 2.0, 0.5
    settings = Settings(
        duration_s=args.duration, warmup_s=args.warmup, concurrency=args.concurrency,
        slo_s=args.slo_p99_ms / 1e3, slo_tolerance=0.25 if args.short else 0.1,
        slo_probes=6 if args.short else 10, threads=args.threads,
    )  # fmt: skip
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        sys.exit(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {**settings.__dict__, "max_batch": MAX_BATCH, "batch_delay_s": BATCH_DELAY_S},
        "models": args.models.split(","),
        "results": {},
        "targets": {},
    }
    with tempfile.TemporaryDirectory(prefix="inferd-compare-") as tmp:
        work = Path(tmp)
        models = {}
        for name in document["models"]:
            models[name] = work / "models" / f"{name}.onnx"
            MODELS[name](models[name])
        for target in targets:
            print(f"== {target}", flush=True)
            try:
                results, config = run_target(
                    target, models, settings, work, args.cache_dir, lambda s: print(s, flush=True)
                )
            except Exception as exc:  # one failing peer must not lose the others' results
                print(f"  failed: {exc}", flush=True)
                document["results"][target] = {"error": str(exc)}
                continue
            document["results"][target] = results
            document["targets"][target] = config
    args.out_json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    args.out_md.write_text(markdown(document))
    if args.out_png:
        plot(document, args.out_png)
    print(markdown(document))


if __name__ == "__main__":
    main()
