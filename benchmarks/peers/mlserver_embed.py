"""MLServer custom runtime running the whole text-embedding pipeline (embed_steps.Embedder) in one
predict; benchmarks/text_embedding_peers.py configures it (adaptive batching on).

model-settings.json: "implementation": "mlserver_embed.EmbedModel", parameters.uri the MiniLM
model.onnx, parameters.extra {"tokenizer_dir", "intra_op_threads"}. V2 JSON in and out: BYTES input
``text``, FP32 output ``embedding``, as inferd serves it.
"""

from embed_steps import Embedder
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class EmbedModel(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra or {}
        self._embed = Embedder(
            self.settings.parameters.uri, extra["tokenizer_dir"], int(extra.get("intra_op_threads", 1))
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        (tensor,) = payload.inputs
        embeddings = self._embed(StringCodec.decode_input(tensor))
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("embedding", embeddings)]
        )
