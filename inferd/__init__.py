"""inferd: an inference server for the Open Inference Protocol (KServe V2) over REST and gRPC.

``Model``, ``Tensor`` and ``Response`` are what a custom Python model's ``model.py`` uses; the
request and response types (whose tensors hold data: ``inferd.types.Tensor``) are for code that
drives the data plane.
"""

from inferd.errors import (
    ErrorKind,
    ExecutionError,
    InferdError,
    InvalidRequest,
    ModelLoadError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from inferd.model import Model, Response, Tensor
from inferd.types import InferRequest, InferResponse, RequestedOutput, TensorSpec

__version__ = "0.1.0"

__all__ = [
    "ErrorKind",
    "ExecutionError",
    "InferRequest",
    "InferResponse",
    "InferdError",
    "InvalidRequest",
    "Model",
    "ModelLoadError",
    "NotFound",
    "PayloadTooLarge",
    "RequestedOutput",
    "Response",
    "Tensor",
    "TensorSpec",
    "Unavailable",
]
