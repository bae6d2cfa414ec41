"""Step 1 of the text-embedding ensemble: sentences (BYTES) -> BERT token ids, padded per batch.

Served as ``text-embedding-tokenizer/1/model.py`` beside the tokenizer files of all-MiniLM-L6-v2.

Padding: a batch is padded to its longest sentence rounded up to a multiple of ``BUCKET`` tokens. The
example serves this model without dynamic batching, so a batch is one request: each request leaves
with its own length, and the encoder's batcher, which merges only requests of equal non-batch shapes,
batches sentences of the same bucket together. Merging requests here instead would pad every sentence
of a batch to the batch's longest: with one-sentence requests of 5 to 36 tokens, batches of 14 cost
the encoder 46 positions per sentence against 23 at each sentence's own bucket. Rounding up to the
bucket lets sentences of similar length share a width and merge, for at most ``BUCKET - 1`` padded
positions; padding to a fixed 256 would make every short sentence pay for the longest one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from inferd import Model, Tensor

BUCKET = 16


class Tokenize(Model):
    inputs = [Tensor("text", "BYTES", [-1])]
    outputs = [
        Tensor("input_ids", "INT64", [-1, -1]),
        Tensor("attention_mask", "INT64", [-1, -1]),
        Tensor("token_type_ids", "INT64", [-1, -1]),
    ]
    max_batch_size = 64

    def load(self, path: Path) -> None:
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        # sentence-transformers truncates at the model's max_seq_length (256 for this model), not at
        # the 128 its tokenizer.json says; padding is done here, per batch.
        settings = json.loads((path / "sentence_bert_config.json").read_text())
        self.max_length = int(settings["max_seq_length"])
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [bytes(text).decode("utf-8", errors="replace") for text in inputs["text"]]
        encodings = self.tokenizer.encode_batch(texts)
        longest = max(len(encoding.ids) for encoding in encodings)
        width = min(self.max_length, -(-longest // BUCKET) * BUCKET)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            ids[row, :length] = encoding.ids
            mask[row, :length] = encoding.attention_mask
            types[row, :length] = encoding.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
