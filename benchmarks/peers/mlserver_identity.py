"""The same identity as benchmarks/models/identity.py as an MLServer custom runtime.

Loaded from model-settings.json ("implementation": "mlserver_identity.IdentityModel"); with adaptive
batching MLServer merges concurrent requests into one ``predict`` call and splits the answer.
"""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class IdentityModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", x)])
