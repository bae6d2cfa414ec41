"""The generative engine in-process: continuous batching against one sequence at a time, same model,
and one stream against onnxruntime-genai's own generator loop on the same model folder.

The rows serve the same N chat prompts of mixed lengths, greedy, each asking for at most --tokens new
tokens (a sequence may end earlier at its end-of-sequence token; tokens/s counts the tokens generated):
  single stream   the N prompts one after another through the engine, each alone (TTFT: p50 of them)
  og loop         the same N prompts one after another through og.Generator (onnxruntime-genai)
  one-at-a-time   all N submitted at once, generative.max_num_seqs: 1 (each waits for the previous)
  continuous      all N submitted at once, generative.max_num_seqs: N (all advance one token per step)

Reported: output tokens/s, time to first token p50/p99 and inter-token p50/p99 (measured where the
caller's async iterator receives each event), and the issue's three checks as ratios: continuous /
one-at-a-time tokens/s (>= 4x), continuous TTFT p99 / single-stream TTFT p50 (< 10x), single stream /
og loop tokens/s (>= 90%).

    python benchmarks/generative_engine.py --model models/smollm2 [--streams 16] [--tokens 32]

Build the model first with `inferd examples build models --generative`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

    start = time.perf_counter()
    if sequential:
        for prompt in prompts:
            await one(prompt)
    else:
        await asyncio.gather(*(one(prompt) for prompt in prompts))
    elapsed = time.perf_counter() - start
    return {
        "tokens": generated,
        "seconds": elapsed,
        "tokens_per_s": generated / elapsed,
        "ttft_p50_ms": percentile(ttft, 50) * 1000,
        "ttft_p99_ms": percentile(ttft, 99) * 1000,
        "itl_p50_ms": percentile(itl, 50) * 1000,
        "itl_p99_ms": percentile(itl, 99) * 1000,
    }


def load(model_dir: Path, max_num_seqs: int) -> GenerativeRuntime:
    config = load_model_config(model_dir)
    # One at a time, the last request waits for all the others: no queue timeout here.
    options = config.generative.model_copy(update={"max_num_seqs": max_num_seqs, "queue_timeout_s": 3600})
    runtime = create_runtime(
        model_dir / "1" / "model.onnx", config.model_copy(update={"generative": options})
    )
    assert isinstance(runtime, GenerativeRuntime)
    return runtime


def og_loop(model_dir: Path, prompts: list[str], tokens: int, threads: int) -> dict[str, float]:
    from og_loop import OgLoop

    loop = OgLoop(model_dir / "1", threads)
    loop.generate(prompts[0], 4)  # warm-up
    start = time.perf_counter()
    generated = sum(loop.generate(prompt, tokens) for prompt in prompts)
    elapsed = time.perf_counter() - start
    return {"tokens": generated, "seconds": elapsed, "tokens_per_s": generated / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a generative model directory")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--no-og", action="store_true", help="skip the onnxruntime-genai row")
    parser.add_argument("--json", type=Path, default=Path("generative_engine.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {"streams": args.streams, "tokens": args.tokens}
    for name, seqs in (("single stream", 1), ("one-at-a-time", 1), ("continuous", args.streams)):
        runtime = load(args.model, seqs)
        try:
            asyncio.run(run(runtime, 1, 4))  # warm-up
            results[name] = asyncio.run(run(runtime, args.streams, args.tokens, name == "single stream"))
            if name == "single stream" and not args.no_og:
                threads = runtime.engine.options.threads or available_cores()
                prompts = chat_prompts(runtime, args.streams)
                results["og loop"] = og_loop(args.model, prompts, args.tokens, threads)
        finally:
            runtime.close()
    print(f"{'':16}{'tokens/s':>10}{'TTFT p50':>10}{'TTFT p99':>10}{'ITL p50':>10}{'ITL p99':>10}  (ms)")
    for name in ("single stream", "og loop", "one-at-a-time", "continuous"):
        if name not in results:
            continue
        r = results[name]
        if name == "og loop":
            print(f"{name:16}{r['tokens_per_s']:10.1f}")
            continue
        print(
            f"{name:16}{r['tokens_per_s']:10.1f}{r['ttft_p50_ms']:10.0f}{r['ttft_p99_ms']:10.0f}"
            f"{r['itl_p50_ms']:10.1f}{r['itl_p99_ms']:10.1f}"
        )
    checks = [
        (
            "throughput_ratio",
            "continuous / one-at-a-time tokens/s",
            results["continuous"]["tokens_per_s"] / results["one-at-a-time"]["tokens_per_s"],
            ">= 4x",
            lambda v: v >= 4,
        ),
        (
            "ttft_p99_over_single",
            "continuous TTFT p99 / single-stream TTFT p50",
            results["continuous"]["ttft_p99_ms"] / results["single stream"]["ttft_p50_ms"],
            "< 10x",
            lambda v: v < 10,
        ),
    ]
    if "og loop" in results:
        checks.append(
            (
                "single_over_og",
                "single stream / og loop tokens/s",
                results["single stream"]["tokens_per_s"] / results["og loop"]["tokens_per_s"],
                ">= 0.9x",
                lambda v: v >= 0.9,
            )
        )
    for key, label, value, target, met in checks:
        results[key] = value
        print(f"{label:46}{value:8.2f}x  target {target:7} {'met' if met(value) else 'NOT met'}")
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
