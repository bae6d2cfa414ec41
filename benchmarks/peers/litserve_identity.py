"""The same identity as benchmarks/models/identity.py as a LitServe LitAPI with LitServe's batching.

Speaks V2 JSON at /v2/models/<name>/infer (like litserve_ort.py) so the same load generator drives it.
Usage: python litserve_identity.py NAME PORT MAX_BATCH BATCH_TIMEOUT_S
"""

import inspect
import sys

import litserve as ls
import numpy as np


class IdentityAPI(ls.LitAPI):
    def __init__(self, name, **kwargs):
        super().__init__(**kwargs)
        self.name = name

    def setup(self, device):
        pass

    def decode_request(self, request):
        x = request["inputs"][0]
        return np.asarray(x["data"], dtype=np.float32).reshape(x["shape"])

    def batch(self, inputs):
        return np.concatenate(inputs)

    def predict(self, x):
        return x  # the model's batched computation: identity

    def unbatch(self, output):
        # One row per request: the benchmark sends batch-1 requests.
        return [output[i : i + 1] for i in range(output.shape[0])]

    def encode_response(self, output):
        return {
            "model_name": self.name,
            "outputs": [
                {
                    "name": "y",
                    "shape": list(output.shape),
                    "datatype": "FP32",
                    "data": output.ravel().tolist(),
                }
            ],
        }


def main():
    name, port, max_batch, timeout = sys.argv[1:5]
    batching = {"max_batch_size": int(max_batch), "batch_timeout": float(timeout)}
    api_path = f"/v2/models/{name}/infer"
    # LitServe moved batching and api_path from LitServer to LitAPI; support both.
    if "max_batch_size" in inspect.signature(ls.LitAPI.__init__).parameters:
        api = IdentityAPI(name, api_path=api_path, **batching)
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    else:
        api = IdentityAPI(name)
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, api_path=api_path, **batching)
    server.run(host="127.0.0.1", port=int(port), generate_client_file=False)


if __name__ == "__main__":
    main()
