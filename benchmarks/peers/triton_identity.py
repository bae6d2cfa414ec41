"""The same identity as benchmarks/models/identity.py for Triton's Python backend (``model.py``).

Triton's dynamic batcher hands ``execute`` a list of requests, not one batch: a model that computes on
the whole batch (as inferd's ``predict`` always does) concatenates them and splits its result, as here.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, "x").as_numpy() for r in requests]
        y = np.concatenate(xs)  # the model's batched computation: identity
        responses, start = [], 0
        for x in xs:
            rows = y[start : start + len(x)]
            start += len(x)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("y", rows)]))
        return responses
