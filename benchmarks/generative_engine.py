"""The generative engine in-process: continuous batching against one sequence at a time, same model,
and one stream against onnxruntime-genai's own generator loop on the same model folder.

All rows serve chat prompts of mixed lengths, greedy, each asking for at most --tokens new tokens (a
sequence may end earlier at its end-of-sequence token; tokens/s counts the tokens generated).

One stream, alternated for --rounds rounds, under three ONNX Runtime settings: the engine's intra-op
threads with spinning off (inferd's default), the same with spinning on (``generative.allow_spinning:
true``; og.Generator spins by default), and one intra-op thread (no worker to wake or to spin):
  single stream   the N prompts one after another through the engine, each alone (TTFT: their p50)
  og loop         the same N prompts one after another through og.Generator on the same model folder,
                  with the same intra-op threads and the same spinning setting
Batching (spinning off), read two ways, each with the same method for both rows:
  burst           all N prompts submitted in the same instant; the time until the last answer ends
  closed loop     N clients, each sending its next prompt when its previous answer ends (their first
                  answers of different lengths, so their cycles spread out); after --warmup seconds,
                  tokens/s over a --window seconds window and the TTFT of the requests sent in it
  one-at-a-time   generative.max_num_seqs: 1 (each request waits for the one before)
  continuous      generative.max_num_seqs: N (all advance one token per step)

Reported: output tokens/s, time to first token p50/p99 and inter-token p50/p99 (measured where the
caller's async iterator receives each event), and the issue's checks as ratios: continuous /
one-at-a-time tokens/s (>= 4x), continuous TTFT p99 / single-stream TTFT p50 (< 10x), single stream /
og loop tokens/s with the same settings (>= 90%).

    python benchmarks/generative_engine.py --model models/smollm2 [--streams 16] [--tokens 64]

Build the model first with `inferd examples build models --generative`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from inferd.generative.contract import ChatMessage, SamplingParams
from inferd.model_config import available_cores, load_model_config
from inferd.runtimes.generative import GenerativeRuntime
from inferd.runtimes.registry import create_runtime

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in a few sentences how a CPU cache works, and why it matters for performance.",
    "List three fruits.",
    "Summarise the plot of a detective story in which the butler did it, with a twist at the end.",
    "What is 12 times 12?",
    "Describe the water cycle.",
    "Give me two tips for writing clear code, each in one sentence.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else 0.0


def chat_prompts(runtime: GenerativeRuntime, count: int) -> list[str]:
    generator = runtime.generator
    return [generator.render_chat([ChatMessage("user", QUESTIONS[i % len(QUESTIONS)])]) for i in range(count)]


def summary(
    tokens: int, seconds: float, ttft: list[float], itl: list[float], cpu_s: float
) -> dict[str, float]:
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        # The process's CPU time per output token: the work done, which other jobs' load on a shared
        # machine does not inflate the way it does wall time (engine thread and ORT's workers included).
        "cpu_ms_per_token": cpu_s * 1000 / tokens if tokens else 0.0,
        "ttft_p50_ms": percentile(ttft, 50) * 1000,
        "ttft_p99_ms": percentile(ttft, 99) * 1000,
        "itl_p50_ms": percentile(itl, 50) * 1000,
        "itl_p99_ms": percentile(itl, 99) * 1000,
    }


async def run(
    runtime: GenerativeRuntime, streams: int, tokens: int, sequential: bool = False
) -> dict[str, float]:
    """``streams`` prompts submitted at once (or one after another when ``sequential``)."""
    generator = runtime.generator
    prompts = chat_prompts(runtime, streams)
    ttft: list[float] = []
    itl: list[float] = []
    generated = 0

    async def one(prompt: str) -> None:
        nonlocal generated
        start = last = time.perf_counter()
        async for event in generator.generate(prompt, SamplingParams(max_tokens=tokens, temperature=0), "b"):
            now = time.perf_counter()
            if event.completion_tokens == 1:
                ttft.append(now - start)
            else:
                itl.append(now - last)
            last = now
            generated += 1

    start, cpu = time.perf_counter(), time.process_time()
    if sequential:
        for prompt in prompts:
            await one(prompt)
    else:
        await asyncio.gather(*(one(prompt) for prompt in prompts))
    return summary(generated, time.perf_counter() - start, ttft, itl, time.process_time() - cpu)


async def closed_loop(
    runtime: GenerativeRuntime, clients: int, tokens: int, warmup_s: float, window_s: float
) -> dict[str, float]:
    """``clients`` clients, each sending its next prompt when its previous answer ends. Counted: the
    tokens received in [warm-up end, + window_s), and the TTFT of every request sent in that window
    (waited for after the window; requests sent before it are cancelled when it ends)."""
    generator = runtime.generator
    prompts = chat_prompts(runtime, len(QUESTIONS))
    begin = time.perf_counter()
    t0, t1 = begin + warmup_s, begin + warmup_s + window_s
    ttft: list[float] = []
    itl: list[float] = []
    counted = 0
    waiting_first: set[int] = set()  # clients whose in-window request has no first token yet

    async def client(k: int) -> None:
        nonlocal counted
        sent = 0
        while time.perf_counter() < t1:
            # A first answer of k/clients of the full length: the clients' cycles spread out instead
            # of all ending (and prefilling their next prompts) together.
            limit = max(1, tokens * (k + 1) // clients) if sent == 0 else tokens
            params = SamplingParams(max_tokens=limit, temperature=0)
            prompt = prompts[(k + sent) % len(prompts)]
            sent += 1
            start = last = time.perf_counter()
            in_window = t0 <= start < t1
            if in_window:
                waiting_first.add(k)
            async for event in generator.generate(prompt, params, f"client-{k}"):
                now = time.perf_counter()
                if event.completion_tokens == 1:
                    waiting_first.discard(k)
                    if in_window:
                        ttft.append(now - start)
                elif t0 <= last and now < t1:
                    itl.append(now - last)
                if t0 <= now < t1:
                    counted += 1
                last = now
                if now >= t1:
                    break  # closing the stream cancels the sequence

    tasks = [asyncio.create_task(client(k)) for k in range(clients)]
    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    cpu = time.process_time()
    await asyncio.sleep(max(0.0, t1 - time.perf_counter()))
    cpu = time.process_time() - cpu
    deadline = t1 + 300
    while waiting_first and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = summary(counted, window_s, ttft, itl, cpu)
    result["requests"] = len(ttft)  # sent in the window (none: the warm-up was too short)
    return result


def load(model_dir: Path, max_num_seqs: int, spinning: bool = False, threads: int = 0) -> GenerativeRuntime:
    config = load_model_config(model_dir)
    # One at a time, the last request waits for all the others: no queue timeout here.
    update: dict[str, Any] = {
        "max_num_seqs": max_num_seqs,
        "queue_timeout_s": 3600,
        "allow_spinning": spinning,
    }
    if threads:
        update["threads"] = threads
    options = config.generative.model_copy(update=update)
    runtime = create_runtime(
        model_dir / "1" / "model.onnx", config.model_copy(update={"generative": options})
    )
    assert isinstance(runtime, GenerativeRuntime)
    return runtime


def og_loop(loop: Any, prompts: list[str], tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    generated = sum(loop.generate(prompt, tokens) for prompt in prompts)
    elapsed = time.perf_counter() - start
    return {"tokens": generated, "seconds": elapsed, "tokens_per_s": generated / elapsed}


def one_stream(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Single stream and og loop alternated, per setting (intra-op threads, spinning): medians over
    the rounds. The settings: the engine's threads with spinning off (inferd's default) and on, and
    one thread (no worker to wake or to spin), each the same for both sides."""
    from og_loop import OgLoop

    threads = args.threads or load_model_config(args.model).generative.threads or available_cores()
    settings = {"spinning off": (threads, False)}
    if args.og:
        settings["spinning on"] = (threads, True)
        if threads > 1:
            settings["1 thread"] = (1, False)
    runtimes = {label: load(args.model, 1, spin, count) for label, (count, spin) in settings.items()}
    try:
        prompts = chat_prompts(runtimes["spinning off"], args.streams)
        loops = {label: OgLoop(args.model / "1", count, spin) for label, (count, spin) in settings.items()}
        for label in settings:
            asyncio.run(run(runtimes[label], 1, 4))  # warm-up
            if args.og:
                loops[label].generate(prompts[0], 4)
        rounds: dict[str, list[dict[str, float]]] = {}
        for index in range(args.rounds):
            for label in settings:
                single = asyncio.run(run(runtimes[label], args.streams, args.tokens, sequential=True))
                rounds.setdefault(f"single stream, {label}", []).append(single)
                line = f"round {index + 1}, {label}: single stream {single['tokens_per_s']:.1f} tokens/s"
                if args.og:
                    og = og_loop(loops[label], prompts, args.tokens)
                    rounds.setdefault(f"og loop, {label}", []).append(og)
                    line += f", og loop {og['tokens_per_s']:.1f}"
                print(line, flush=True)
        for row, runs in rounds.items():
            results[row] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            results[row]["rounds"] = [r["tokens_per_s"] for r in runs]
        results["one_stream_settings"] = {
            label: {"threads": c, "spinning": sp} for label, (c, sp) in settings.items()
        }
    finally:
        for runtime in runtimes.values():
            runtime.close()


def batching(args: argparse.Namespace, results: dict[str, Any]) -> None:
    for seqs, row in ((1, "one-at-a-time"), (args.streams, "continuous")):
        runtime = load(args.model, seqs, threads=args.threads)
        try:
            asyncio.run(run(runtime, 1, 4))  # warm-up
            results[f"{row}, burst"] = asyncio.run(run(runtime, args.streams, args.tokens))
            results[f"{row}, closed loop"] = asyncio.run(
                closed_loop(runtime, args.streams, args.tokens, args.warmup, args.window)
            )
            print(f"{row} done", flush=True)
        finally:
            runtime.close()


def report(results: dict[str, Any]) -> None:
    header = (
        f"{'':34}{'tokens/s':>10}{'TTFT p50':>10}{'TTFT p99':>10}{'ITL p50':>10}{'ITL p99':>10}"
        f"{'CPU/token':>10}  (ms)"
    )
    print(header)
    for name, r in results.items():
        if not isinstance(r, dict) or "tokens_per_s" not in r:
            continue
        if name.startswith("og loop"):
            print(f"{name:34}{r['tokens_per_s']:10.1f}")
            continue
        print(
            f"{name:34}{r['tokens_per_s']:10.1f}{r['ttft_p50_ms']:10.0f}{r['ttft_p99_ms']:10.0f}"
            f"{r['itl_p50_ms']:10.1f}{r['itl_p99_ms']:10.1f}{r['cpu_ms_per_token']:10.2f}"
        )
    single = results["single stream, spinning off"]
    checks: list[tuple[str, str, float, str, bool]] = []
    for way in ("burst", "closed loop"):
        continuous, alone = results[f"continuous, {way}"], results[f"one-at-a-time, {way}"]
        ratio = continuous["tokens_per_s"] / alone["tokens_per_s"]
        cpu_ratio = alone["cpu_ms_per_token"] / continuous["cpu_ms_per_token"]
        print(f"{way}: one-at-a-time / continuous CPU per token {cpu_ratio:.2f}x (the work batching saves)")
        results[f"cpu_ratio_{way.replace(' ', '_')}"] = cpu_ratio
        checks.append(
            (
                f"throughput_ratio_{way.replace(' ', '_')}",
                f"{way}: continuous / one-at-a-time",
                ratio,
                ">= 4x",
                ratio >= 4,
            )
        )
        if continuous.get("requests") == 0:
            print(f"{way}: no request was sent in the window: raise --warmup / --window")
            continue
        ttft = continuous["ttft_p99_ms"] / single["ttft_p50_ms"]
        checks.append(
            (
                f"ttft_p99_over_single_{way.replace(' ', '_')}",
                f"{way}: TTFT p99 / single TTFT p50",
                ttft,
                "< 10x",
                ttft < 10,
            )
        )
    for label in ("spinning off", "spinning on", "1 thread"):
        if f"og loop, {label}" in results:
            ratio = (
                results[f"single stream, {label}"]["tokens_per_s"]
                / results[f"og loop, {label}"]["tokens_per_s"]
            )
            key = f"single_over_og_{label.replace(' ', '_')}"
            checks.append((key, f"{label}: single / og loop", ratio, ">= 0.9x", ratio >= 0.9))
    for key, label, value, target, met in checks:
        results[key] = value
        print(f"{label:40}{value:8.2f}x  target {target:7} {'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a generative model directory")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of the one-stream rows")
    parser.add_argument("--warmup", type=float, default=10.0, help="closed loop: seconds before counting")
    parser.add_argument("--window", type=float, default=20.0, help="closed loop: seconds counted")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the cores available)")
    parser.add_argument("--no-og", dest="og", action="store_false", help="skip the onnxruntime-genai rows")
    parser.add_argument("--json", type=Path, default=Path("generative_engine.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "streams": args.streams,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "threads": args.threads or "the model's (default: the cores available)",
        "window_s": args.window,
    }
    one_stream(args, results)
    batching(args, results)
    report(results)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
