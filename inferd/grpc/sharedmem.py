"""The gRPC methods of Triton's shared memory extensions (system regions; CUDA answered as unsupported)."""

from __future__ import annotations

from inferd.dataplane.dataplane import DataPlane
from inferd.errors import NotFound, Unsupported
from inferd.grpc.access import CALLER
from inferd.grpc.errors import Context, abort
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.sharedmem import NO_CUDA


class SharedMemoryMethods:
    """Mixed into InferenceServicer; regions live in the data plane (dataplane.regions)."""

    _dataplane: DataPlane

    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Context
    ) -> pb.SystemSharedMemoryStatusResponse:
        try:
            response = pb.SystemSharedMemoryStatusResponse()
            for status in self._dataplane.regions.status(request.name or None):
                response.regions[status["name"]].CopyFrom(
                    pb.SystemSharedMemoryStatusResponse.RegionStatus(**status)
                )
            return response
        except Exception as exc:
            await abort(context, exc, "SystemSharedMemoryStatus")

    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Context
    ) -> pb.SystemSharedMemoryRegisterResponse:
        try:
            regions = self._dataplane.regions
            regions.register(request.name, request.key, request.offset, request.byte_size, CALLER.get())
            return pb.SystemSharedMemoryRegisterResponse()
        except Exception as exc:
            await abort(context, exc, "SystemSharedMemoryRegister")

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Context
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self._dataplane.regions.unregister(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: Context
    ) -> pb.CudaSharedMemoryStatusResponse:
        if request.name:
            await abort(context, NotFound(f"Unable to find cuda shared memory region: '{request.name}'"), "")
        return pb.CudaSharedMemoryStatusResponse()

    async def CudaSharedMemoryRegister(
        self, request: pb.CudaSharedMemoryRegisterRequest, context: Context
    ) -> pb.CudaSharedMemoryRegisterResponse:
        await abort(context, Unsupported(NO_CUDA), "CudaSharedMemoryRegister")

    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: Context
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        return pb.CudaSharedMemoryUnregisterResponse()  # nothing is ever registered
