"""inferd: an inference server for the Open Inference Protocol (KServe V2) over REST and gRPC."""

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
from inferd.types import InferRequest, InferResponse, RequestedOutput, Tensor, TensorSpec

__version__ = "0.1.0"

__all__ = [
    "ErrorKind",
    "ExecutionError",
    "InferRequest",
    "InferResponse",
    "InferdError",
    "InvalidRequest",
    "ModelLoadError",
    "NotFound",
    "PayloadTooLarge",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "Unavailable",
]
