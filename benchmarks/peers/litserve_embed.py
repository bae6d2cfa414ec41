"""LitServe LitAPI running the whole text-embedding pipeline (embed_steps.Embedder) in one predict,
with LitServe's batching; benchmarks/text_embedding_peers.py starts it.

Accepts and answers V2 JSON (BYTES input ``text``, FP32 output ``embedding``) at
/v2/models/<name>/infer, as inferd does, so one load generator drives every server. Usage:
python litserve_embed.py MODEL.onnx TOKENIZER_DIR NAME PORT THREADS MAX_BATCH BATCH_TIMEOUT_S
"""

import inspect
import sys

import litserve as ls
import numpy as np
from embed_steps import Embedder, v2_response


class EmbedAPI(ls.LitAPI):
    def __init__(self, model_path, tokenizer_dir, name, threads, **kwargs):
        super().__init__(**kwargs)
        self.model_path, self.tokenizer_dir, self.name, self.threads = (
            model_path,
            tokenizer_dir,
            name,
            threads,
        )

    def setup(self, device):
        self.embed = Embedder(self.model_path, self.tokenizer_dir, self.threads)

    def decode_request(self, request):
        (tensor,) = request["inputs"]
        return [str(t) for t in tensor["data"]]

    def batch(self, inputs):
        return inputs  # one list of sentences per request; predict keeps them apart

    def predict(self, x):
        embeddings = self.embed([text for texts in x for text in texts])
        ends = np.cumsum([len(texts) for texts in x])[:-1]
        return np.split(embeddings, ends)

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return v2_response(self.name, output)


def main():
    model_path, tokenizer_dir, name, port, threads, max_batch, timeout = sys.argv[1:8]
    batching = {"max_batch_size": int(max_batch), "batch_timeout": float(timeout)}
    api_path = f"/v2/models/{name}/infer"
    # LitServe moved batching and api_path from LitServer to LitAPI; support both.
    if "max_batch_size" in inspect.signature(ls.LitAPI.__init__).parameters:
        api = EmbedAPI(model_path, tokenizer_dir, name, int(threads), api_path=api_path, **batching)
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    else:
        api = EmbedAPI(model_path, tokenizer_dir, name, int(threads))
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, api_path=api_path, **batching)
    server.run(host="127.0.0.1", port=int(port), generate_client_file=False)


if __name__ == "__main__":
    main()
