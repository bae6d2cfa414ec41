"""The exported decoder computes what transformers computes (whole prompt, in chunks, left-padded in a
batch), and the sampler's top-k / top-p / seed behave as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferd.generative.contract import SamplingParams
from inferd.generative.decoder import DecoderSession, KVBatch
from inferd.generative.sampling import sample
from inferd.generative.text import StopMatcher


def test_the_exported_decoder_matches_transformers_batched_and_chunked(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from inferd.generative.export import export_decoder

    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    export_decoder(model, tmp_path / "model.onnx")
    session = DecoderSession(tmp_path / "model.onnx", threads=1)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [40, 41, 42, 43]]
    with torch.no_grad():
        expected = [model(torch.tensor([p])).logits[0, -1].numpy() for p in prompts]
    batch = KVBatch(session.layout)
    for seq_id, prompt in enumerate(prompts):
        # Prefilled in two chunks, then joined to the batch (the second row is left-padded).
        head, tail = prompt[:2], prompt[2:-1]
        _, cache = session.run(
            np.array([head]), np.ones((1, 2), np.int64), np.array([[0, 1]]), session.layout.empty(1)
        )
        positions = np.arange(2, 2 + len(tail))[None]
        _, cache = session.run(np.array([tail]), np.ones((1, 2 + len(tail)), np.int64), positions, cache)
        batch.join(seq_id, cache)
    ids, mask, positions = batch.step_inputs([p[-1] for p in prompts])
    logits, _ = session.run(ids, mask, positions, batch.past)
    for row, want in enumerate(expected):
        np.testing.assert_allclose(logits[row], want, atol=1e-4)


def test_sampling_narrows_to_top_k_and_top_p_and_follows_the_seed() -> None:
    logits = np.array([1.0, 3.0, 2.0, 0.5, 2.9])
    draws = {sample(logits, SamplingParams(top_k=2), np.random.default_rng(s)) for s in range(200)}
    assert draws == {1, 4}
    assert {sample(logits, SamplingParams(top_p=1e-6), np.random.default_rng(s)) for s in range(50)} == {1}
    assert sample(logits, SamplingParams(temperature=0), np.random.default_rng(0)) == 1
    seeded = [sample(logits, SamplingParams(), np.random.default_rng(7)) for _ in range(20)]
    assert len(set(seeded)) == 1


def test_a_stop_string_split_across_pieces_is_never_streamed() -> None:
    matcher = StopMatcher(("STOP",))
    streamed = []
    for piece in ["Hello S", "T", "O", "P and more"]:
        text, stopped = matcher.push(piece)
        streamed.append(text)
        if stopped:
            break
    assert "".join(streamed) == "Hello "
    assert stopped
