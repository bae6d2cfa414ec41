"""GRPCInferenceService: each method decodes, calls the data plane, encodes; errors map by kind."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import grpc
from google.protobuf import json_format

from inferd.dataplane.dataplane import DataPlane
from inferd.errors import InferdError, InvalidRequest, Unsupported
from inferd.grpc.errors import GRPC_STATUS
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc
from inferd.protocol.grpc_codec import decode_infer_request, encode_infer_response
from inferd.tracing.carrier import carrier_from_metadata
from inferd.types import InferRequest

if TYPE_CHECKING:  # OpenTelemetry is an optional extra: imported only when tracing is on
    from inferd.tracing.tracer import Tracing

log = logging.getLogger(__name__)
# grpcio ships no type information, so the servicer context is untyped here.
Context: TypeAlias = Any


async def _abort(context: Context, exc: Exception, method: str) -> NoReturn:
    if isinstance(exc, InferdError):
        await context.abort(GRPC_STATUS[exc.kind], exc.message)
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (error id %s)", method, error_id, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal server error (error id {error_id})")
    raise AssertionError("context.abort returned")  # it always raises


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, tracing: Tracing | None = None) -> None:
        self._dataplane = dataplane
        self._tracing = tracing

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        try:
            return pb.ModelReadyResponse(ready=self._dataplane.model_ready(request.name, request.version))
        except Exception as exc:
            await _abort(context, exc, "ModelReady")

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self._dataplane.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        try:
            metadata = self._dataplane.model_metadata(request.name, request.version)
            return json_format.ParseDict(metadata, pb.ModelMetadataResponse())
        except Exception as exc:
            await _abort(context, exc, "ModelMetadata")

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> pb.ModelConfigResponse:
        try:
            config = self._dataplane.model_config(request.name, request.version)
            return json_format.ParseDict({"config": config}, pb.ModelConfigResponse())
        except Exception as exc:
            await _abort(context, exc, "ModelConfig")

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        try:
            stats = self._dataplane.model_statistics(request.name, request.version)
            return json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())
        except Exception as exc:
            await _abort(context, exc, "ModelStatistics")

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        index = self._dataplane.repository_index(ready_only=request.ready)
        return json_format.ParseDict({"models": index}, pb.RepositoryIndexResponse())

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        try:
            if any(key.startswith("file:") for key in request.parameters):
                raise Unsupported("loading a model from files sent in the request is not supported")
            override = None
            if "config" in request.parameters:
                config = request.parameters["config"]
                if config.WhichOneof("parameter_choice") != "string_param":
                    raise InvalidRequest("parameter 'config' must be a string holding the configuration")
                override = config.string_param
            await self._dataplane.load_model(request.model_name, override)
            return pb.RepositoryModelLoadResponse()
        except Exception as exc:
            await _abort(context, exc, "RepositoryModelLoad")

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        try:
            await self._dataplane.unload_model(request.model_name)
            return pb.RepositoryModelUnloadResponse()
        except Exception as exc:
            await _abort(context, exc, "RepositoryModelUnload")

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        try:
            return await self._infer(request, context)
        except Exception as exc:
            await _abort(context, exc, "ModelInfer")

    def _decode(self, request: pb.ModelInferRequest) -> InferRequest:
        version = request.model_version or None
        admission = self._dataplane.check_servable(request.model_name, version)
        try:
            return decode_infer_request(request, admission)
        except InferdError as exc:
            self._dataplane.record_rejected(request.model_name, version, exc)
            raise

    async def _infer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        """One request, unary or from a stream, with its span when tracing is on; raises on failure."""
        tracing = self._tracing
        if tracing is None:
            return encode_infer_response(await self._dataplane.infer(self._decode(request)))
        carrier = carrier_from_metadata(context.invocation_metadata())
        span = tracing.start_request("grpc", request.model_name, request.model_version or None, carrier)
        try:
            decoded = self._decode(request)
            span.set_request_id(decoded.id)
            response = await self._dataplane.infer(decoded, span)
            with span.encoding():
                encoded = encode_infer_response(response)
        except Exception as exc:
            span.end(exc)
            raise
        span.end()
        return encoded

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Errors travel in-band so one bad request does not end the stream.
        async for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request, context))
            except InferdError as exc:
                yield pb.ModelStreamInferResponse(error_message=exc.message)
            except Exception as exc:
                error_id = uuid.uuid4().hex[:12]
                log.error("unexpected error in ModelStreamInfer (error id %s)", error_id, exc_info=exc)
                yield pb.ModelStreamInferResponse(
                    error_message=f"internal server error (error id {error_id})"
                )
