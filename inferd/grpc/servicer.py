"""GRPCInferenceService: each method translates to and from the data plane's types; errors map by kind."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
from google.protobuf import json_format

from inferd.dataplane.dataplane import DataPlane
from inferd.errors import InvalidRequest, Unsupported
from inferd.grpc.access import CALLER
from inferd.grpc.errors import Context, abort
from inferd.grpc.settings import SettingsMethods
from inferd.grpc.sharedmem import SharedMemoryMethods
from inferd.grpc.streaming import StreamSession
from inferd.names import model_name, model_version
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc
from inferd.protocol._generated import inferd_light_pb2 as light
from inferd.protocol.grpc_codec import decode_infer_request, encode_infer_response
from inferd.protocol.model_config import config_proto
from inferd.sharedmem import SharedMemoryAccess
from inferd.tracing.carrier import carrier_from_metadata
from inferd.types import Admission, InferRequest, InferResponse

log = logging.getLogger(__name__)
_SHUTTING_DOWN = "the server is shutting down: retry on another replica"


class InferenceServicer(SharedMemoryMethods, SettingsMethods, pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane
        # Draining (GrpcServer.stop): inference calls are refused with UNAVAILABLE while the accepted
        # ones finish, so none is left for grpc's shutdown to cancel (CANCELLED is not retryable).
        self._refusing = False
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_call = 0.0

    def refuse_new_calls(self) -> None:
        self._refusing = True
        # The quiet period counts from now too: a call grpc-core received just before this, whose
        # handler has not started yet, is then answered (UNAVAILABLE) before the server stops, instead of
        # being cancelled by the stop (CANCELLED, seen when the last call had arrived long before).
        self._last_call = time.monotonic()

    async def quiesce(self, quiet_s: float) -> None:
        """Until no inference call runs and none has arrived for ``quiet_s`` seconds."""
        while True:
            await self._idle.wait()
            remaining = self._last_call + quiet_s - time.monotonic()
            if remaining <= 0 and self._idle.is_set():
                return
            await asyncio.sleep(max(remaining, 0.01))

    def _admit(self) -> bool:
        """Count one inference call; False (refuse it) while draining."""
        self._last_call = time.monotonic()
        if self._refusing:
            return False
        self._calls += 1
        self._idle.clear()
        return True

    def _release(self) -> None:
        self._calls -= 1
        if not self._calls:
            self._idle.set()

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=await self._dataplane.server_ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        try:
            name, version = model_name(request.name), model_version(request.version)
            return pb.ModelReadyResponse(ready=self._dataplane.control.model_ready(name, version))
        except Exception as exc:
            await abort(context, exc, "ModelReady")

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self._dataplane.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        try:
            name, version = model_name(request.name), model_version(request.version)
            metadata = self._dataplane.control.model_metadata(name, version)
            return json_format.ParseDict(metadata, pb.ModelMetadataResponse())
        except Exception as exc:
            await abort(context, exc, "ModelMetadata")

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> pb.ModelConfigResponse:
        try:
            name, version = model_name(request.name), model_version(request.version)
            config = self._dataplane.control.model_config(name, version)
            return pb.ModelConfigResponse(config=config_proto(config))
        except Exception as exc:
            await abort(context, exc, "ModelConfig")

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        try:
            # An empty name asks for every model.
            name = model_name(request.name) if request.name else None
            stats = await self._dataplane.control.statistics(name, model_version(request.version))
            # Figures beyond Triton's schema (a generative model's "generation") are REST-only.
            document = {"model_stats": stats}
            return json_format.ParseDict(document, pb.ModelStatisticsResponse(), ignore_unknown_fields=True)
        except Exception as exc:
            await abort(context, exc, "ModelStatistics")

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        index = await self._dataplane.control.repository_index(ready_only=request.ready)
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
            await self._dataplane.control.load_model(model_name(request.model_name), override)
            return pb.RepositoryModelLoadResponse()
        except Exception as exc:
            await abort(context, exc, "RepositoryModelLoad")

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        try:
            await self._dataplane.control.unload_model(model_name(request.model_name))
            return pb.RepositoryModelUnloadResponse()
        except Exception as exc:
            await abort(context, exc, "RepositoryModelUnload")

    async def ModelInfer(self, request: light.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        if not self._admit():
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        try:
            return await self._infer(request, context)
        except Exception as exc:
            await abort(context, exc, "ModelInfer")
        finally:
            self._release()

    async def _infer(self, request: light.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        """One request, unary or from a stream; raises on failure."""
        model_name(request.model_name)
        model_version(request.model_version)
        caller = CALLER.get()
        regions = self._dataplane.regions
        shm = regions.access(caller) if len(regions) else None  # none registered: refused if named
        return await self._dataplane.serve(_GrpcCall(request, context, caller, shm))

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[light.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        if not self._admit():
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        try:
            async for response in self._stream(request_iterator, context):
                yield response
        finally:
            self._release()

    def _stream(
        self, request_iterator: AsyncIterator[light.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests run concurrently; each may answer many times (grpc/streaming.py)."""
        session = StreamSession(self._dataplane, lambda request: self._infer(request, context))
        return session.run(request_iterator)


class _GrpcCall:
    """One ModelInfer call for ``DataPlane.serve``: the protobuf codec."""

    __slots__ = ("_context", "_message", "_shm", "caller", "model", "version")
    protocol = "grpc"

    def __init__(
        self,
        message: light.ModelInferRequest,
        context: Context,
        caller: str | None,
        shm: SharedMemoryAccess | None,
    ) -> None:
        self._message = message
        self._shm = shm
        self._context = context
        self.model: str = message.model_name
        self.version: str | None = message.model_version or None
        self.caller = caller

    def decode(self, admission: Admission | None) -> InferRequest:
        return decode_infer_request(self._message, admission, self._shm)

    def encode(self, request: InferRequest, response: InferResponse) -> pb.ModelInferResponse:
        return encode_infer_response(response, request, self._shm)

    def carrier(self) -> dict[str, str]:
        return carrier_from_metadata(self._context.invocation_metadata())
