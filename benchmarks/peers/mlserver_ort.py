"""MLServer custom runtime around onnxruntime, as benchmarks/compare.py configures it.

Loaded by MLServer from model-settings.json ("implementation": "mlserver_ort.OrtModel"); the session
options come from parameters.extra so every server in the comparison runs ORT the same way.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtModel(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 1))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        self._output_names = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        feeds = {name: np.ascontiguousarray(array) for name, array in feeds.items()}
        results = self._session.run(None, feeds)
        outputs = [NumpyCodec.encode_output(n, r) for n, r in zip(self._output_names, results, strict=True)]
        return InferenceResponse(model_name=self.name, outputs=outputs)
