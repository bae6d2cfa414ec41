"""The onnxruntime-genai decoder adapter (inferd/generative/gqa.py) on the tiny int4 model: each greedy
step's logits equal a reference loop's that recomputes the whole sequence at every step (no cache at
all), its tokens onnxruntime-genai's own generator's; rows of different lengths batched (joining,
leaving, the buffers growing) get the logits they get alone; a prompt prefilled in chunks the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from inferd.errors import ModelLoadError
from inferd.generative.backend import open_decoder
from inferd.generative.decoder import open_session
from inferd.generative.gqa import GENAI_CONFIG, GqaDecoder

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [40, 41, 42, 43], [7, 300, 12, 99, 3, 150, 151, 152, 153, 20, 21, 22, 23]]
STEPS = 70  # past the first buffer capacity (64 positions): the batch regrows mid-run


@pytest.fixture(scope="module")
def decoder(tiny_version: Path) -> GqaDecoder:
    loaded = open_decoder(tiny_version / "model.onnx", threads=1)
    assert isinstance(loaded, GqaDecoder)
    return loaded


def recomputed(decoder: GqaDecoder, prompt: list[int], steps: int) -> list[np.ndarray]:
    """Greedy decoding that feeds the whole sequence as a fresh prompt at every step: each step's logits."""
    tokens, out = list(prompt), []
    for _ in range(steps):
        logits, _ = decoder.prefill_many([tokens])
        out.append(logits[0])
        tokens.append(int(np.argmax(logits[0])))
    return out


def batched(
    decoder: GqaDecoder, prompts: list[list[int]], steps: int, leave_at: int = -1
) -> list[list[np.ndarray]]:
    """Greedy decoding of ``prompts`` in one SlotBatch, each step's logits per prompt; prompt 0 leaves
    after ``leave_at`` steps."""
    logits, caches = decoder.prefill_many(prompts)
    batch = decoder.new_batch(max_rows=8, max_positions=512)
    out: dict[int, list[np.ndarray]] = {}
    for seq_id, (prompt, cache) in enumerate(zip(prompts, caches, strict=True)):
        batch.join(seq_id, cache, len(prompt))
        out[seq_id] = [logits[seq_id]]
    for step in range(1, steps):
        if step == leave_at:
            batch.keep([row for row, seq_id in enumerate(batch.rows) if seq_id != 0])
        step_logits = batch.decode([int(np.argmax(out[seq_id][-1])) for seq_id in batch.rows])
        for row, seq_id in enumerate(batch.rows):
            out[seq_id].append(step_logits[row])
    return [out[seq_id] for seq_id in range(len(prompts))]


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for step, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, atol=1e-3, err_msg=f"step {step}")


def greedy(logits: list[np.ndarray]) -> list[int]:
    return [int(np.argmax(step)) for step in logits]


def test_each_step_equals_a_loop_without_a_cache(decoder: GqaDecoder) -> None:
    for prompt in PROMPTS:
        assert_same(batched(decoder, [prompt], 12)[0], recomputed(decoder, prompt, 12))


def test_rows_of_different_lengths_batched_get_what_they_get_alone(decoder: GqaDecoder) -> None:
    alone = [batched(decoder, [prompt], STEPS)[0] for prompt in PROMPTS]
    for got, want in zip(batched(decoder, PROMPTS, STEPS), alone, strict=True):
        assert_same(got, want)
    # Row 0 leaves midway: the last row moves into its place and keeps its results.
    together = batched(decoder, PROMPTS, STEPS, leave_at=20)
    assert_same(together[0], alone[0][:20])
    for got, want in zip(together[1:], alone[1:], strict=True):
        assert_same(got, want)


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
        assert theirs == greedy(batched(decoder, [prompt], 12)[0])


@pytest.mark.parametrize("content", ["not json", '{"model": {"decoder": {"head_size": "64"}}}', None])
def test_a_missing_or_malformed_genai_config_is_a_load_error(
    tmp_path: Path, tiny_version: Path, content: str | None
) -> None:
    version = tmp_path / "1"
    shutil.copytree(tiny_version, version)
    config = version / GENAI_CONFIG
    if content is None:
        config.unlink()
    else:
        config.write_text(content)
    with pytest.raises(ModelLoadError, match="genai_config.json"):
        open_decoder(version / "model.onnx", threads=1)


def test_a_graph_in_neither_layout_is_a_load_error(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["logits"])],
        "not-a-decoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("logits", TensorProto.INT64, ["b", "s"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match="not a decoder inferd serves"):
        open_decoder(tmp_path / "model.onnx", threads=1)


def test_a_graph_of_unknown_vocabulary_size_decodes_the_same(tiny_version: Path) -> None:
    # Decode steps bind their own logits array when the graph says the vocabulary size; a graph that
    # leaves it dynamic is read back from ONNX Runtime's output instead (the size learnt at the first step).
    known = open_decoder(tiny_version / "model.onnx", threads=1)
    unknown = open_decoder(tiny_version / "model.onnx", threads=1)
    assert isinstance(known, GqaDecoder) and isinstance(unknown, GqaDecoder)
    unknown._vocab = None
    prompts = [[5, 9, 3, 7], [11, 2]]
    for got, want in zip(batched(unknown, prompts, 6), batched(known, prompts, 6), strict=True):
        assert_same(got, want)


def test_the_lm_head_runs_on_each_rows_last_position_only(tiny_version: Path, decoder: GqaDecoder) -> None:
    # The graph is served with its LM head after a gather of each row's last position
    # (inferd/generative/last_logits.py): the logits the engine uses are those of the graph as built.
    path = tiny_version / "model.onnx"
    plain = GqaDecoder(open_session(path, threads=1), path)
    prompts = [[5, 9, 3, 7, 2, 8], [11, 2]]
    ids = np.asarray([prompts[0]], np.int64)
    full = plain.run_shared(ids, np.ones_like(ids), ids * 0, plain.buffers(1, 6))
    trimmed = decoder.run_shared(ids, np.ones_like(ids), ids * 0, decoder.buffers(1, 6))
    assert full.shape[1] == 6 and trimmed.shape[1] == 1
    np.testing.assert_allclose(trimmed[0, 0], full[0, -1], atol=1e-4)
    for got, want in zip(batched(decoder, prompts, 8), batched(plain, prompts, 8), strict=True):
        assert_same(got, want)
    cache = None
    for start in range(0, 6, 4):  # a chunk after cached positions: its own last position
        logits, cache = decoder.prefill_chunk(cache, prompts[0][start : start + 4], start)
    np.testing.assert_allclose(logits, full[0, -1], atol=1e-3)
