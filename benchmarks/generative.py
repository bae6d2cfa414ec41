"""Generative serving, side by side in one run on the real SmolLM2-135M-Instruct (``smollm2``).

Each round measures, with inferd's own streaming client (``inferd bench --scenario generative``, the
built-in prompts of mixed lengths, greedy, ``--max-tokens`` per request):

(a) continuous batching against one sequence at a time: the same model files served twice by one
    inferd, as ``smollm2`` (max_num_seqs 16) and ``smollm2-seq1`` (max_num_seqs 1), each at 16
    concurrent streams: output tokens/s ratio, and the batching engine's TTFT p99 at 16 streams against
    its single-stream TTFT (median of one stream, closed loop);
(b) one stream through the server (generate_stream, SSE) against onnxruntime-genai's own generator
    loop (og.Generator, in-process, greedy) on the very same model folder (the builder's int4 decoder
    and genai_config.json; same intra-op threads and spinning setting (off unless --spinning: og's
    own default is on), same prompts and tokenizer): what the server costs;
(c) a peer: the same weights in a transformers + torch server (benchmarks/peers/transformers_generate.py,
    one ``model.generate`` per request, no batching across requests), OpenAI streaming at 16 streams,
    against inferd's OpenAI route at 16 streams.

Each server run also gives the server process's CPU ms per streamed token (user + system time of
every thread over the whole run, warm-up and drain included, over every token event received): the
work per token, which other jobs' load on a shared machine does not inflate the way it does
tokens/s. The peer is compared on it too.

Rounds run the targets one after another and the report quotes the median of each figure over rounds.
The model is built with ``inferd examples build DIR --generative`` unless DIR already holds it.

    python benchmarks/generative.py --model-dir /tmp/smollm2-models --rounds 3 --duration 15
    python benchmarks/generative.py --short      # one round of 4 s runs: checks the script works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare import free_port, wait_http
from og_loop import OgLoop

from inferd.bench.endpoint import Endpoint
from inferd.bench.generative import Api, GenerativeSpec, probe_generative, run_generative
from inferd.bench.generative_report import summarize, summary_document
from inferd.bench.prompts import BUILTIN_PROMPTS

HERE = Path(__file__).resolve().parent
STREAMS = 16


def _config(max_num_seqs: int, threads: int, queue_timeout_s: float, spinning: bool) -> str:
    return (
        "platform: generative\ngenerative:\n"
        f"  max_num_seqs: {max_num_seqs}\n  max_tokens_in_flight: 32768\n  max_tokens: 512\n"
        f"  queue_timeout_s: {queue_timeout_s}\n  max_waiting: 256\n  prefill_chunk: 256\n"
        f"  threads: {threads}\n  allow_spinning: {'true' if spinning else 'false'}\n"
    )


def model_version(model_dir: Path) -> Path:
    version = model_dir / "smollm2" / "1"
    if not (version / "model.onnx").is_file():
        print(f"building smollm2 into {model_dir} ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "inferd", "examples", "build", str(model_dir), "--generative"], check=True
        )
    return version


def repository(root: Path, version: Path, threads: int, spinning: bool) -> Path:
    """``smollm2`` and ``smollm2-seq1``: the same files (linked), batching on and off."""
    models = root / "models"
    for name, seqs, timeout in (("smollm2", STREAMS, 30.0), ("smollm2-seq1", 1, 3600.0)):
        (models / name).mkdir(parents=True)
        (models / name / "1").symlink_to(version.resolve(), target_is_directory=True)
        # One at a time, 15 streams wait whole generations: no refusal for waiting that long.
        (models / name / "config.yaml").write_text(_config(seqs, threads, timeout, spinning))
    return models


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of every thread of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass(frozen=True)
class Server:
    port: int
    pid: int


@contextmanager
def serving(command: list[str], ready_path: str, port: int, log: Path) -> Iterator[Server]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", process, log, timeout_s=600.0)
        yield Server(port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stream(
    server: Server, model: str, api: Api, concurrency: int, args: argparse.Namespace, drain_s: float
) -> dict[str, Any]:
    """The run's summary document, with the server's CPU ms per token received."""
    spec = GenerativeSpec(
        endpoint=Endpoint("http", "127.0.0.1", server.port),
        model=model,
        version="",
        api=api,
        prompts=BUILTIN_PROMPTS,
        max_tokens=args.max_tokens,
        temperature=0.0,
        concurrency=concurrency,
        # 16 streams start with 16 prefills at once: the warm-up lets that burst pass, so the window
        # sees arrivals spread as they are in steady state. One stream needs no such wait.
        warmup_s=args.warmup if concurrency > 1 else min(args.warmup, 3.0),
        duration_s=args.duration,
        drain_s=drain_s,
        seed=args.seed,
    )
    failure = probe_generative(spec, timeout_s=300)
    if failure is not None:
        raise RuntimeError(f"{model} on port {server.port}: {failure}")
    cpu = process_cpu_s(server.pid)
    result = run_generative(spec)
    cpu = process_cpu_s(server.pid) - cpu
    tokens = sum(len(record.token_times) for record in result.records)
    document = summary_document(summarize(spec, result))
    document["server_cpu_ms_per_token"] = cpu * 1000 / tokens if tokens else float("nan")
    return document


def one_round(args: argparse.Namespace, inferd: Server, peer: Server | None, local: OgLoop) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    single = stream(inferd, "smollm2", "generate", 1, args, drain_s=120)
    batched = stream(inferd, "smollm2", "generate", STREAMS, args, drain_s=120)
    print(
        f"  batched {batched['output_tokens_per_s']:.1f} tok/s, single {single['output_tokens_per_s']:.1f}",
        file=sys.stderr,
    )
    # One at a time, streams still waiting at the end would take minutes: cut them (tokens/s counts
    # what arrived in the window; the cut ones are not errors of the server).
    serial = stream(inferd, "smollm2-seq1", "generate", STREAMS, args, drain_s=0.1)
    figures["single"] = single
    figures["batched"] = batched
    figures["serial"] = serial
    figures["in_process_tokens_per_s"] = local.tokens_per_s(
        list(BUILTIN_PROMPTS), args.max_tokens, args.duration, args.seed
    )
    if peer is not None:
        figures["inferd_openai"] = stream(inferd, "smollm2", "openai", STREAMS, args, 120)
        figures["peer"] = stream(peer, "smollm2", "openai", STREAMS, args, 300)
    return figures


def _median(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for figures in rounds:
        value: Any = figures
        for key in path:
            value = value[key] if value is not None else None
        if value is not None:
            values.append(float(value))
    return statistics.median(values) if values else float("nan")


def _ratio(over: float, under: float) -> float:
    """NaN when a window saw nothing to divide by (a run too short for the machine)."""
    return over / under if under else float("nan")


def report(rounds: list[dict[str, Any]], peer: bool) -> dict[str, float]:
    m = {
        "batched_tps": _median(rounds, "batched", "output_tokens_per_s"),
        "serial_tps": _median(rounds, "serial", "output_tokens_per_s"),
        "batched_ttft_p99_ms": _median(rounds, "batched", "ttft_ms", "p99"),
        "batched_ttft_p50_ms": _median(rounds, "batched", "ttft_ms", "p50"),
        "serial_ttft_p50_ms": _median(rounds, "serial", "ttft_ms", "p50"),
        "single_ttft_p50_ms": _median(rounds, "single", "ttft_ms", "p50"),
        "single_ttft_p99_ms": _median(rounds, "single", "ttft_ms", "p99"),
        "batched_itl_p50_ms": _median(rounds, "batched", "inter_token_ms", "p50"),
        "batched_itl_p99_ms": _median(rounds, "batched", "inter_token_ms", "p99"),
        "single_itl_p50_ms": _median(rounds, "single", "inter_token_ms", "p50"),
        "single_tps": _median(rounds, "single", "output_tokens_per_s"),
        "in_process_tps": _median(rounds, "in_process_tokens_per_s"),
        "batched_cpu_ms": _median(rounds, "batched", "server_cpu_ms_per_token"),
        "serial_cpu_ms": _median(rounds, "serial", "server_cpu_ms_per_token"),
        "single_cpu_ms": _median(rounds, "single", "server_cpu_ms_per_token"),
    }
    m["batching_ratio"] = _ratio(m["batched_tps"], m["serial_tps"])
    m["ttft_ratio"] = _ratio(m["batched_ttft_p99_ms"], m["single_ttft_p50_ms"])
    m["server_vs_in_process"] = _ratio(m["single_tps"], m["in_process_tps"])
    lines = [
        "| figure | value | target |",
        "| --- | --- | --- |",
        f"| (a) output tok/s, 16 streams, continuous batching | {m['batched_tps']:.1f} | |",
        f"| (a) output tok/s, 16 streams, one sequence at a time | {m['serial_tps']:.1f} | |",
        f"| (a) batching / one at a time | **{m['batching_ratio']:.2f}x** | >= 4x |",
        f"| (a) server CPU ms per token: batching / one at a time / single stream | "
        f"{m['batched_cpu_ms']:.2f} / {m['serial_cpu_ms']:.2f} / {m['single_cpu_ms']:.2f} | |",
        f"| (a) one at a time / batching, CPU per token | "
        f"**{_ratio(m['serial_cpu_ms'], m['batched_cpu_ms']):.2f}x** | |",
        f"| (a) TTFT p99 at 16 streams, batching (ms) | {m['batched_ttft_p99_ms']:.0f} | |",
        f"| (a) single-stream TTFT p50 / p99 (ms) | {m['single_ttft_p50_ms']:.0f} / "
        f"{m['single_ttft_p99_ms']:.0f} | |",
        f"| (a) TTFT p99 at 16 / single-stream TTFT p50 | **{m['ttft_ratio']:.2f}x** | < 10x |",
        f"| (a) inter-token p50 / p99, 16 streams (ms) | {m['batched_itl_p50_ms']:.1f} / "
        f"{m['batched_itl_p99_ms']:.1f} | |",
        f"| (b) one stream, inferd generate_stream tok/s | {m['single_tps']:.1f} | |",
        f"| (b) one stream, onnxruntime-genai generator loop tok/s | {m['in_process_tps']:.1f} | |",
        f"| (b) inferd / onnxruntime-genai | **{m['server_vs_in_process'] * 100:.0f}%** | >= 90% |",
    ]
    if peer:
        m["inferd_openai_tps"] = _median(rounds, "inferd_openai", "output_tokens_per_s")
        m["peer_tps"] = _median(rounds, "peer", "output_tokens_per_s")
        m["inferd_openai_ttft_p99_ms"] = _median(rounds, "inferd_openai", "ttft_ms", "p99")
        m["peer_ttft_p99_ms"] = _median(rounds, "peer", "ttft_ms", "p99")
        m["peer_ratio"] = _ratio(m["inferd_openai_tps"], m["peer_tps"])
        m["inferd_openai_cpu_ms"] = _median(rounds, "inferd_openai", "server_cpu_ms_per_token")
        m["peer_cpu_ms"] = _median(rounds, "peer", "server_cpu_ms_per_token")
        lines += [
            f"| (c) output tok/s, 16 streams, inferd /v1/completions | {m['inferd_openai_tps']:.1f} | |",
            f"| (c) output tok/s, 16 streams, transformers server | {m['peer_tps']:.1f} | |",
            f"| (c) inferd / transformers server | **{m['peer_ratio']:.2f}x** | (report) |",
            f"| (c) server CPU ms per token, inferd / transformers | {m['inferd_openai_cpu_ms']:.2f} / "
            f"{m['peer_cpu_ms']:.2f} (**{_ratio(m['peer_cpu_ms'], m['inferd_openai_cpu_ms']):.2f}x**) | |",
            f"| (c) TTFT p99, inferd / transformers (ms) | {m['inferd_openai_ttft_p99_ms']:.0f} / "
            f"{m['peer_ttft_p99_ms']:.0f} | |",
        ]
    print("\n".join(lines))
    return m


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "smollm2-models")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=0, help="ORT/torch intra-op threads; 0: every core")
    parser.add_argument(
        "--spinning", action="store_true", help="ORT intra-op spinning on, for inferd and og.Generator alike"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip (c), the transformers server")
    parser.add_argument("--short", action="store_true", help="one round of 4 s runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("generative.json"))
    args = parser.parse_args()
    if args.short:
        args.rounds, args.duration, args.warmup = 1, 4.0, 1.0
    threads = args.threads or len(os.sched_getaffinity(0))
    version = model_version(args.model_dir)
    local = OgLoop(version, threads, args.spinning)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = repository(root, version, threads, args.spinning)
        inferd_port, peer_port = free_port(), free_port()
        inferd = [
            sys.executable,
            "-m",
            "inferd",
            "serve",
            str(models),
            "--http-port",
            str(inferd_port),
            "--grpc-port",
            "0",
        ]
        peer = [
            sys.executable,
            str(HERE / "peers" / "transformers_generate.py"),
            str(peer_port),
            str(threads),
        ]
        peer_serving = _none() if args.no_peer else serving(peer, "/ready", peer_port, root / "peer.log")
        inferd_serving = serving(inferd, "/v2/health/ready", inferd_port, root / "inferd.log")
        with inferd_serving as inferd_up, peer_serving as peer_up:
            for number in range(args.rounds):
                print(f"round {number + 1}/{args.rounds} ...", file=sys.stderr)
                rounds.append(one_round(args, inferd_up, peer_up, local))
                args.json.write_text(json.dumps({"rounds": rounds}, indent=2, default=float) + "\n")
    medians = report(rounds, not args.no_peer)
    document = {
        "machine": {
            "cpus": os.cpu_count(),
            "threads": threads,
            "spinning": args.spinning,
            "platform": platform.platform(),
            "load_avg": os.getloadavg(),
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "medians": medians,
        "rounds": rounds,
    }
    args.json.write_text(json.dumps(document, indent=2, default=float) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


@contextmanager
def _none() -> Iterator[Server | None]:
    yield None


if __name__ == "__main__":
    main()
