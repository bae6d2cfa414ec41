"""The trivial Python model of benchmarks/python_models.py: identity on FP32 [batch, 30].

benchmarks/python_models.py copies it into an inferd repository as ``identity/1/model.py``; its
config.yaml sets the batching (max_batch_size 64, dynamic batching) like every peer's.
"""

import numpy as np

from inferd import Model, Tensor


class Identity(Model):
    inputs = [Tensor("x", "FP32", [-1, 30])]
    outputs = [Tensor("y", "FP32", [-1, 30])]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}
