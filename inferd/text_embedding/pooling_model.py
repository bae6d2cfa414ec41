"""Step 3 of the text-embedding ensemble: the encoder's last hidden state -> sentence embeddings.

Mean over the tokens the attention mask keeps (padding excluded), then L2 normalisation: what
sentence-transformers' Pooling and Normalize modules do for all-MiniLM-L6-v2.
"""

from __future__ import annotations

import numpy as np

from inferd import Model, Tensor

DIM = 384


class MeanPool(Model):
    inputs = [
        Tensor("last_hidden_state", "FP32", [-1, -1, DIM]),
        Tensor("attention_mask", "INT64", [-1, -1]),
    ]
    outputs = [Tensor("embedding", "FP32", [-1, DIM])]
    max_batch_size = 64

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mask = inputs["attention_mask"].astype(np.float32)
        summed = np.einsum("bsh,bs->bh", inputs["last_hidden_state"], mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return {"embedding": (pooled / np.maximum(norms, 1e-12)).astype(np.float32)}
