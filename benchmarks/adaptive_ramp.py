"""SLO-aware adaptive batching against fixed queue delays, on a load ramp (issue 12, part 2).

For each model (the example mlp, and the cnn example when torch is installed) one inferd serves the
same ONNX file several times, differing only in ``dynamic_batching``: ``max_queue_delay_ms`` 0, 0.5,
2 and 10 (``--delays``), and ``target_p99_ms: T`` (the adaptive batcher, ``--target-p99-ms``). The
load is ``inferd bench``'s open loop (inferd.bench, in this process: Poisson arrivals of batch-1 REST
binary requests, latency from each request's scheduled time):

1. capacity: the highest requests/s a closed loop at ``--concurrency`` reaches on any fixed delay;
2. a ramp over ``--steps`` shares of that capacity (10% to 120%); at each step every variant runs in
   turn, one after the other, so each step compares them under the same machine load.

Per run: p99, throughput (answers/s), goodput (answers within the target, per second), shed (HTTP
503: what the adaptive batcher refuses rather than answer late; "(loop)": how many of the run's
refusals, warm-up and drain included, the front-end made before decoding because the request's
predicted completion was past the target, from /metrics) and other errors. The issue's checks:

- at every step up to capacity, adaptive p99 <= target;
- there, adaptive throughput >= 90% of the best fixed delay's at that step, chosen in hindsight (the
  best among those that held the target, or among all when none did);
- above capacity, adaptive goodput >= 90% of capacity.

When the inferd running does not accept ``target_p99_ms`` (adaptive batching not merged), it says so
and still runs the fixed-delay rows, with the checks marked n/a.

The target is per model: on 2 cores the cnn (ResNet-18 at 224x224) takes ~80 ms per image, so 20 ms
is out of its reach; ``--target-p99-ms 20`` sets one target for all. The whole default run takes
~7 minutes on 2 cores (the cnn's first build ~1 minute more; models are cached in --models-dir).

    python benchmarks/adaptive_ramp.py [--models mlp,cnn] [--target-p99-ms mlp=20,cnn=500]
        [--delays 0,0.5,2,10] [--steps 0.1,0.3,0.5,0.7,0.9,1,1.2] [--step-s mlp=3,cnn=5]
        [--capacity-s 3] [--json benchmarks/results/adaptive_ramp.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from advise_vs_grid import build_example  # noqa: E402

from inferd.bench.endpoint import Endpoint, model_metadata
from inferd.bench.inputs import batch_rows, random_inputs
from inferd.bench.payloads import rest_payload
from inferd.bench.report import measurement_document
from inferd.bench.runner import LoadSpec, probe
from inferd.bench.scenarios import Bench
from inferd.errors import InferdError
from inferd.model_config import load_model_config

RESULTS = Path(__file__).parent / "results"
MAX_BATCH = {"mlp": 64, "cnn": 16}  # the examples' caps (inferd examples build)
ADAPTIVE = "adaptive"
SHED = "HTTP 503"


def _per_model(text: str, cast: type[float]) -> dict[str, float]:
    """``mlp=20,cnn=500``, or one bare value for every model."""
    if "=" not in text:
        return {"*": cast(text)}
    return {k.strip(): cast(v) for k, v in (part.split("=", 1) for part in text.split(","))}


def _pick(values: dict[str, float], model: str, flag: str) -> float:
    value = values.get(model, values.get("*"))
    if value is None:
        raise SystemExit(f"{flag} gives no value for {model}")
    return value


def _variant(model: str, delay: float | None) -> str:
    return f"{model}-{ADAPTIVE}" if delay is None else f"{model}-d{delay:g}".replace(".", "p")


def _repository(model: str, onnx: Path, delays: list[float], target_ms: float, dest: Path) -> dict[str, str]:
    """One model directory per variant, same file; returns variant name -> its label in the table."""
    labels = {}
    for delay in [*delays, None]:
        name = _variant(model, delay)
        (dest / name / "1").mkdir(parents=True)
        try:
            os.link(onnx, dest / name / "1" / "model.onnx")
        except OSError:
            shutil.copyfile(onnx, dest / name / "1" / "model.onnx")
        batching = f"target_p99_ms: {target_ms:g}" if delay is None else f"max_queue_delay_ms: {delay:g}"
        (dest / name / "config.yaml").write_text(
            f"max_batch_size: {MAX_BATCH[model]}\ndynamic_batching:\n  {batching}\ninstances: 1\n"
        )
        labels[name] = f"target {target_ms:g} ms" if delay is None else f"delay {delay:g} ms"
    return labels


@contextmanager
def _server(repository: Path, workdir: Path) -> Iterator[str]:
    port_file = workdir / f"ports-{time.monotonic_ns()}.json"
    log = workdir / "server.log"
    command = [sys.executable, "-m", "inferd", "serve", str(repository), "--http-port", "0", "--no-grpc",
               "--port-file", str(port_file)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"inferd did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{json.loads(port_file.read_text())['http']}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _states(url: str, names: list[str], timeout_s: float = 120) -> dict[str, str | None]:
    """Each variant's load failure (None: ready), once each is ready or has failed to load."""
    deadline = time.monotonic() + timeout_s
    while True:
        request = urllib.request.Request(f"{url}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            rows = {row["name"]: row for row in json.loads(reply.read()) if row["name"] in names}
        states = {n: _failure(rows[n]) if n in rows else "not in the repository index" for n in names}
        if all(state != _PENDING for state in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


_PENDING = "pending"


def _failure(row: dict[str, Any]) -> str | None:
    if row.get("state") == "READY":
        return None
    reason = str(row.get("reason") or "")
    if row.get("state") != "UNAVAILABLE" or not reason or reason.startswith("not loaded"):
        return _PENDING
    return reason


def _bench(url: str, model: str, warmup_s: float, drain_s: float, seed: int) -> Bench:
    endpoint = Endpoint.parse(url)
    metadata = model_metadata(endpoint, model)
    tensors = random_inputs(metadata, 1, {}, seed)
    payload = rest_payload(tensors, "binary")
    spec = LoadSpec(endpoint=endpoint, model=model, version="", rest_payload=payload, grpc_payload=None,
                    mode="open", warmup_s=warmup_s, drain_s=drain_s, seed=seed)  # fmt: skip
    failure = probe(spec)
    if failure is not None:
        raise RuntimeError(f"the first request to {model} failed: {failure}")
    return Bench(spec, batch_rows(tensors, metadata))


def _frontend_shed(url: str, name: str) -> float:
    """inferd_requests_shed_total{reason="frontend"} of a variant: what the front-end refused before
    decoding (its predicted completion was past the target; 0 where this inferd has no such label)."""
    prefix = f'inferd_requests_shed_total{{model="{name}",version="1",reason="frontend"}} '
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
    return 0.0


def _row(document: dict[str, Any], frontend_shed: float = 0.0) -> dict[str, Any]:
    errors = dict(document["errors"])
    return {
        "offered_rate": document["offered_rate"],
        # No answer at all has no p99 (NaN in the report): None, so the JSON stays JSON.
        "p99_ms": p99 if math.isfinite(p99 := document["latency_ms"]["p99"]) else None,
        "throughput": document["requests_per_s"],
        "goodput": document["goodput_per_s"],
        "shed": errors.pop(SHED, 0),
        # Of those, refused by the front-end before decoding (event loop lag), during the whole run
        # (its warm-up and drain included, unlike "shed").
        "shed_frontend": frontend_shed,
        "other_errors": errors,
        "mean_batch": (document["server"] or {}).get("mean_batch"),
    }


def ramp_model(model: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    target_ms = _pick(args.target_p99_ms, model, "--target-p99-ms")
    step_s = _pick(args.step_s, model, "--step-s")
    delays = [float(d) for d in args.delays.split(",")]
    onnx = build_example(model, args.models_dir)
    repository = workdir / model
    labels = _repository(model, onnx, delays, target_ms, repository)
    adaptive = _variant(model, None)
    result: dict[str, Any] = {"model": model, "target_p99_ms": target_ms, "step_s": step_s, "labels": labels}
    # The server refuses to start on a config.yaml it does not understand: ask its config loader first.
    try:
        load_model_config(repository / adaptive)
        result["adaptive_supported"] = True
    except InferdError as exc:
        shutil.rmtree(repository / adaptive)
        result["adaptive_supported"] = False
        result["adaptive_note"] = (
            f"this inferd does not accept dynamic_batching.target_p99_ms ({exc.message}): adaptive "
            "batching is not merged here, so only the fixed-delay rows run"
        )
        print(f"{model}: {result['adaptive_note']}", flush=True)
    with _server(repository, workdir) as url:
        names = [n for n in labels if (repository / n).is_dir()]
        states = _states(url, names)
        for name, reason in states.items():
            if reason is not None:
                raise RuntimeError(f"{name} did not load: {reason}")
        variants = names
        benches = {n: _bench(url, n, args.warmup, args.drain, args.seed) for n in variants}
        capacity_runs = {}
        for name in variants:
            if name == adaptive:
                continue
            spec = replace(benches[name].spec, duration_s=args.capacity_s)
            measured = replace(benches[name], spec=spec).closed("capacity", args.concurrency)
            capacity_runs[name] = measured.requests_per_s
        capacity = max(capacity_runs.values())
        if capacity <= 0:
            raise RuntimeError(f"{model}: no answer in the capacity runs ({capacity_runs})")
        result |= {"capacity": capacity, "capacity_runs": capacity_runs, "steps": []}
        print(f"{model}: capacity {capacity:.1f} req/s (closed loop c={args.concurrency})", flush=True)
        for share in (float(s) for s in args.steps.split(",")):
            rate = share * capacity
            rows = {}
            for name in variants:
                spec = replace(benches[name].spec, duration_s=step_s)
                before = _frontend_shed(url, name)
                measured = replace(benches[name], spec=spec).open(rate)
                frontend = _frontend_shed(url, name) - before
                rows[name] = _row(measurement_document(measured, None, target_ms / 1e3), frontend)
            result["steps"].append({"share": share, "rate": rate, "rows": rows})
            print(
                json.dumps({"model": model, "share": share, "rate": round(rate, 1), "rows": rows}), flush=True
            )
    result["checks"] = checks(result, adaptive, args.ratio, args.goodput_share)
    return result


def checks(result: dict[str, Any], adaptive: str, ratio: float, goodput_share: float) -> dict[str, Any]:
    """The issue's three checks, per step; None where they do not apply or could not run."""
    target, capacity = result["target_p99_ms"], result["capacity"]
    out: dict[str, Any] = {
        "p99_within_target": [],
        "throughput_vs_best_fixed": [],
        "goodput_above_capacity": [],
    }
    for step in result["steps"]:
        rows = step["rows"]
        mine = rows.get(adaptive)
        fixed = {n: r for n, r in rows.items() if n != adaptive}
        held = {n: r for n, r in fixed.items() if r["p99_ms"] is not None and r["p99_ms"] <= target}
        pool = held or fixed
        best = max(pool, key=lambda n: pool[n]["throughput"])
        if step["share"] <= 1.0:
            out["p99_within_target"].append(
                {"share": step["share"], "p99_ms": mine["p99_ms"] if mine else None,
                 "pass": (mine["p99_ms"] is not None and mine["p99_ms"] <= target) if mine else None}
            )  # fmt: skip
            best_throughput = pool[best]["throughput"]
            out["throughput_vs_best_fixed"].append(
                {"share": step["share"], "best_fixed": best, "ratio": mine["throughput"] / best_throughput
                 if mine and best_throughput else None,
                 "pass": mine["throughput"] >= ratio * best_throughput if mine else None}
            )  # fmt: skip
        else:
            out["goodput_above_capacity"].append(
                {"share": step["share"], "adaptive": mine["goodput"] / capacity if mine else None,
                 "fixed": {n: r["goodput"] / capacity for n, r in fixed.items()},
                 "pass": mine["goodput"] >= goodput_share * capacity if mine else None}
            )  # fmt: skip
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'model':<5} {'step':>5} {'rate/s':>8} {'variant':<16} {'p99 ms':>8} {'answers/s':>9} "
          f"{'goodput/s':>9} {'shed':>6} {'(loop)':>6} {'errors':>6} {'batch':>5}")  # fmt: skip
    for result in results:
        for step in result["steps"]:
            for name, row in step["rows"].items():
                batch = "-" if row["mean_batch"] is None else f"{row['mean_batch']:.1f}"
                label = result["labels"][name]
                print(
                    f"{result['model']:<5} {step['share']:>5.0%} {step['rate']:>8.1f} {label:<16} "
                    f"{_ms(row['p99_ms']):>8} {row['throughput']:>9.1f} {row['goodput']:>9.1f} "
                    f"{row['shed']:>6} {row.get('shed_frontend', 0):>6.0f} "
                    f"{sum(row['other_errors'].values()):>6} {batch:>5}"
                )
        capacity, target = result["capacity"], result["target_p99_ms"]
        print(f"{result['model']}: capacity {capacity:.1f} req/s, target p99 {target:g} ms")
        if not result["adaptive_supported"]:
            print(f"  checks n/a: {result['adaptive_note']}")
            continue
        for name, entries in result["checks"].items():
            verdicts = [e["pass"] for e in entries]
            verdict = "PASS" if verdicts and all(verdicts) else "FAIL" if verdicts else "n/a"
            print(f"  {name}: {verdict}  " + json.dumps(entries))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument(
        "--target-p99-ms", default="mlp=20,cnn=500", help="adaptive target per model, or one for all"
    )
    parser.add_argument("--delays", default="0,0.5,2,10", help="fixed max_queue_delay_ms values compared")
    parser.add_argument("--steps", default="0.1,0.3,0.5,0.7,0.9,1,1.2", help="shares of capacity")
    parser.add_argument("--step-s", default="mlp=3,cnn=5", help="measured seconds per run, per model or one")
    parser.add_argument("--capacity-s", type=float, default=3.0, help="seconds of each capacity run")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop streams for capacity")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before each measurement")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for late answers")
    parser.add_argument("--ratio", type=float, default=0.9, help="adaptive / best fixed throughput to pass")
    parser.add_argument(
        "--goodput-share", type=float, default=0.9, help="goodput / capacity above it to pass"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=RESULTS / "models", help="ONNX files, built once")
    parser.add_argument("--json", type=Path, default=RESULTS / "adaptive_ramp.json")
    args = parser.parse_args()
    args.target_p99_ms = _per_model(args.target_p99_ms, float)
    args.step_s = _per_model(args.step_s, float)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models.split(","):
            try:
                results.append(ramp_model(model, args, Path(scratch)))
            except ImportError as exc:
                print(f"{model}: skipped ({exc})")
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"wall_s": time.perf_counter() - started, "models": results}, indent=2))
    print(f"wrote {args.json} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
