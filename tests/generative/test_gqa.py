"""The onnxruntime-genai decoder adapter (inferd/generative/gqa.py) on the tiny int4 model: greedy tokens
equal a reference loop that recomputes the whole sequence at every step (no cache at all) and
onnxruntime-genai's own generator; rows of different lengths batched (joining, leaving, the buffers
growing) give each row the tokens it gets alone; a prompt prefilled in chunks gives the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferd.generative.backend import open_decoder
from inferd.generative.gqa import GqaDecoder

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [40, 41, 42, 43], [7, 300, 12, 99, 3, 150, 151, 152, 153, 20, 21, 22, 23]]
STEPS = 70  # past the first buffer capacity (64 positions): the batch regrows mid-run


@pytest.fixture(scope="module")
def decoder(tiny_version: Path) -> GqaDecoder:
    loaded = open_decoder(tiny_version / "model.onnx", threads=1)
    assert isinstance(loaded, GqaDecoder)
    return loaded


def recomputed(decoder: GqaDecoder, prompt: list[int], steps: int) -> list[int]:
    """Greedy decoding that feeds the whole sequence as a fresh prompt at every step."""
    tokens = list(prompt)
    for _ in range(steps):
        logits, _ = decoder.prefill_many([tokens])
        tokens.append(int(np.argmax(logits[0])))
    return tokens[len(prompt) :]


def batched(decoder: GqaDecoder, prompts: list[list[int]], steps: int, leave_at: int = -1) -> list[list[int]]:
    """Greedy decoding of ``prompts`` in one SlotBatch; prompt 0 leaves after ``leave_at`` steps."""
    logits, caches = decoder.prefill_many(prompts)
    batch = decoder.new_batch(max_rows=8, max_positions=512)
    out: dict[int, list[int]] = {}
    for seq_id, (prompt, cache) in enumerate(zip(prompts, caches, strict=True)):
        batch.join(seq_id, cache, len(prompt))
        out[seq_id] = [int(np.argmax(logits[seq_id]))]
    for step in range(1, steps):
        if step == leave_at:
            batch.keep([row for row, seq_id in enumerate(batch.rows) if seq_id != 0])
        step_logits = batch.decode([out[seq_id][-1] for seq_id in batch.rows])
        for row, seq_id in enumerate(batch.rows):
            out[seq_id].append(int(np.argmax(step_logits[row])))
    return [out[seq_id] for seq_id in range(len(prompts))]


def test_greedy_tokens_equal_a_loop_without_a_cache(decoder: GqaDecoder) -> None:
    for prompt in PROMPTS:
        want = recomputed(decoder, prompt, 12)
        assert batched(decoder, [prompt], 12) == [want]
    assert len({tuple(recomputed(decoder, p, 12)) for p in PROMPTS}) == len(PROMPTS)  # not degenerate


def test_rows_of_different_lengths_batched_get_their_tokens_alone(decoder: GqaDecoder) -> None:
    alone = [batched(decoder, [prompt], STEPS)[0] for prompt in PROMPTS]
    assert batched(decoder, PROMPTS, STEPS) == alone
    # Row 0 leaves midway: the last row moves into its place and keeps its tokens.
    together = batched(decoder, PROMPTS, STEPS, leave_at=20)
    assert together[0] == alone[0][:20]
    assert together[1:] == alone[1:]


def test_a_prompt_prefilled_in_chunks_gives_the_same_logits(decoder: GqaDecoder) -> None:
    prompt = PROMPTS[2] * 6  # 78 tokens: the chunk buffer regrows past 64
    whole, _ = decoder.prefill_many([prompt])
    cache = None
    for start in range(0, len(prompt), 10):
        logits, cache = decoder.prefill_chunk(cache, prompt[start : start + 10], start)
    np.testing.assert_allclose(logits, whole[0], atol=1e-3)


def test_onnxruntime_genai_generates_the_same_greedy_tokens(tiny_version: Path, decoder: GqaDecoder) -> None:
    og = pytest.importorskip("onnxruntime_genai")
    model = og.Model(str(tiny_version))
    for prompt in PROMPTS:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + 12, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(prompt)
        theirs: list[int] = []
        while not generator.is_done():
            generator.generate_next_token()
            theirs.append(int(generator.get_next_tokens()[0]))
        assert theirs == batched(decoder, [prompt], 12)[0]
