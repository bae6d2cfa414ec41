"""LitServe LitAPI around onnxruntime with LitServe's batching, as benchmarks/compare.py configures it.

It accepts and answers V2 (Open Inference Protocol) JSON at /v2/models/<name>/infer so that the same
load generator drives every server. Usage: python litserve_ort.py MODEL.onnx NAME PORT THREADS
MAX_BATCH BATCH_TIMEOUT_S
"""

import inspect
import sys

import litserve as ls
import numpy as np
import onnxruntime as ort

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
DATATYPES = {np.dtype(v): k for k, v in DTYPES.items()}


class OrtAPI(ls.LitAPI):
    def __init__(self, path, name, threads, **kwargs):
        super().__init__(**kwargs)
        self.path, self.name, self.threads = path, name, threads

    def setup(self, device):
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def decode_request(self, request):
        return {
            t["name"]: np.asarray(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"])
            for t in request["inputs"]
        }

    def batch(self, inputs):
        return {name: np.concatenate([i[name] for i in inputs]) for name in inputs[0]}

    def predict(self, x):
        return self.session.run(None, x)

    def unbatch(self, output):
        # One row per request: the comparison sends batch-1 requests.
        return [[o[i : i + 1] for o in output] for i in range(output[0].shape[0])]

    def encode_response(self, output):
        return {
            "model_name": self.name,
            "outputs": [
                {
                    "name": n,
                    "shape": list(o.shape),
                    "datatype": DATATYPES[o.dtype],
                    "data": o.ravel().tolist(),
                }
                for n, o in zip(self.output_names, output, strict=True)
            ],
        }


def main():
    path, name, port, threads, max_batch, timeout = sys.argv[1:7]
    batching = {"max_batch_size": int(max_batch), "batch_timeout": float(timeout)}
    api_path = f"/v2/models/{name}/infer"
    # LitServe moved batching and api_path from LitServer to LitAPI; support both.
    if "max_batch_size" in inspect.signature(ls.LitAPI.__init__).parameters:
        api = OrtAPI(path, name, int(threads), api_path=api_path, **batching)
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    else:
        api = OrtAPI(path, name, int(threads))
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, api_path=api_path, **batching)
    server.run(host="127.0.0.1", port=int(port), generate_client_file=False)


if __name__ == "__main__":
    main()
