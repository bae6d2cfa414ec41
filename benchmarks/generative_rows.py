"""What a row costs in one execution of onnxruntime-genai's int4 decoder (the graph `inferd examples
build --generative` writes), read as CPU time so that it holds on a shared machine.

Per variant (a model folder, a MatMulNBits ``accuracy_level`` rewritten in memory, intra-op threads),
alternated for --rounds rounds, medians of the process's CPU time per execution:
  decode R     one decode step of R rows over --context cached positions (the engine's SlotBatch)
  prefill M    one execution of M prompt tokens (k prompts of --prompt-tokens tokens, right-padded
               together as the engine's batched prefill runs them)
and each divided by its rows (ms of CPU per token). With --same-as-alone, also whether a row's logits
depend on the rows beside it: 4 prompts of different lengths decoded in steps of R rows (rows cycling
through the 4), each row's logits against the same prompt's 1-row step (0 = bit-identical; greedy
decoding batched and alone can only differ where this is not 0). Wall time on a machine others use mixes in
their load; CPU time of the process counts only the work done (with more than one intra-op thread
it includes the workers' time, and no idle wait since spinning is off).

    python benchmarks/generative_rows.py /tmp/genai-models/smollm2 [/tmp/other-build] \
        [--levels 4,1] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from inferd.generative.decoder import open_session
from inferd.generative.gqa import GqaDecoder, SlotBatch
from inferd.generative.last_logits import last_position_graph


def decoder(model: Path, level: int, threads: int) -> GqaDecoder:
    path = model / "1" / "model.onnx"
    graph = last_position_graph(path)
    proto = (
        onnx.load_from_string(graph) if graph is not None else onnx.load(str(path), load_external_data=False)
    )
    for node in proto.graph.node:
        if node.op_type == "MatMulNBits":
            for attribute in node.attribute:
                if attribute.name == "accuracy_level":
                    attribute.i = level
    return GqaDecoder(open_session(path, threads, False, proto.SerializeToString()), path)


def same_as_alone(dec: GqaDecoder, rows: list[int]) -> str:
    rng = np.random.default_rng(1)
    prompts = [[int(t) for t in rng.integers(100, 40000, n)] for n in (40, 60, 80, 30)]
    caches = [dec.prefill_many([prompt])[1][0] for prompt in prompts]

    def step(count: int) -> np.ndarray:
        batch = dec.new_batch(count, 128)
        for row in range(count):
            batch.join(row, caches[row % 4], len(prompts[row % 4]))
        return batch.decode([7] * count)

    alone = [step_one(dec, prompt, cache) for prompt, cache in zip(prompts, caches, strict=True)]
    found = []
    for count in rows:
        logits = step(count)
        worst = max(float(np.abs(logits[row] - alone[row % 4]).max()) for row in range(count))
        found.append(f"{count} rows {worst:.3g}")
    return ", ".join(found)


def step_one(dec: GqaDecoder, prompt: list[int], cache: list[np.ndarray]) -> np.ndarray:
    batch = dec.new_batch(1, 128)
    batch.join(0, cache, len(prompt))
    logits: np.ndarray = batch.decode([7])[0]
    return logits


def cpu_ms(action: Callable[[], object]) -> float:
    start = time.process_time()
    action()
    return (time.process_time() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", type=Path, nargs="+", help="model directories (NAME/1/model.onnx)")
    parser.add_argument("--levels", default="4", help="MatMulNBits accuracy levels, comma-separated")
    parser.add_argument("--threads", default="1", help="intra-op threads, comma-separated")
    parser.add_argument("--rows", default="1,2,4,8,16", help="decode step rows")
    parser.add_argument("--prompts", default="1,4,16", help="prompts per prefill execution")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--context", type=int, default=100, help="cached positions per decoding row")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--same-as-alone", action="store_true", help="compare batched rows' logits with alone"
    )
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    counts = [int(k) for k in args.prompts.split(",")]
    rng = np.random.default_rng(0)
    context = [int(t) for t in rng.integers(100, 40000, args.context)]
    prompts = [[int(t) for t in rng.integers(100, 40000, args.prompt_tokens)] for _ in range(max(counts))]

    tests: dict[str, dict[str, tuple[int, Callable[[], object]]]] = {}
    for model in args.models:
        for level in (int(x) for x in args.levels.split(",")):
            for threads in (int(x) for x in args.threads.split(",")):
                label = f"{model.name} level {level}, {threads} thread{'s' if threads > 1 else ''}"
                dec = decoder(model, level, threads)
                _, (cache,) = dec.prefill_many([context])
                cases: dict[str, tuple[int, Callable[[], object]]] = {}
                for count in rows:
                    batch: SlotBatch = dec.new_batch(max(rows), args.context + 4 * args.rounds + 8)
                    for row in range(count):
                        batch.join(row, cache, args.context)
                    # Each step grows the rows by one position: over the rounds, a handful.
                    cases[f"decode {count}"] = (count, lambda b=batch, n=count: b.decode([5] * n))
                for count in counts:
                    cases[f"prefill {count * args.prompt_tokens}"] = (
                        count * args.prompt_tokens,
                        lambda d=dec, k=count: d.prefill_many(prompts[:k]),
                    )
                for _, action in cases.values():
                    action()  # warm-up
                tests[label] = cases
                if args.same_as_alone:
                    print(f"{label}: max |logit batched - alone| " + same_as_alone(dec, rows), flush=True)
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, cases in tests.items():
            for name, (_, action) in cases.items():
                samples.setdefault((label, name), []).append(cpu_ms(action))
    for label, cases in tests.items():
        print(label)
        for name, (tokens, _) in cases.items():
            ms = statistics.median(samples[(label, name)])
            print(f"  {name:14} {ms:8.1f} ms CPU  {ms / tokens:6.2f} ms per token", flush=True)


if __name__ == "__main__":
    main()
