"""The gRPC methods of Triton's logging and trace extensions."""

from __future__ import annotations

from inferd.dataplane.dataplane import DataPlane
from inferd.grpc.errors import Context, abort
from inferd.log_control import log_settings, update_log_settings
from inferd.names import model_name
from inferd.protocol._generated import grpc_service_pb2 as pb


class SettingsMethods:
    """Mixed into InferenceServicer."""

    _dataplane: DataPlane

    async def LogSettings(self, request: pb.LogSettingsRequest, context: Context) -> pb.LogSettingsResponse:
        try:
            changes = {}
            for key, value in request.settings.items():
                kind = value.WhichOneof("parameter_choice")
                changes[key] = getattr(value, kind) if kind else None
            settings = update_log_settings(changes) if changes else log_settings()
            response = pb.LogSettingsResponse()
            for key, setting in settings.items():
                entry = response.settings[key]
                if isinstance(setting, bool):
                    entry.bool_param = setting
                elif isinstance(setting, int):
                    entry.uint32_param = setting
                else:
                    entry.string_param = setting
            return response
        except Exception as exc:
            await abort(context, exc, "LogSettings")

    async def TraceSetting(
        self, request: pb.TraceSettingRequest, context: Context
    ) -> pb.TraceSettingResponse:
        try:
            model = model_name(request.model_name) if request.model_name else None
            if model is not None:
                self._dataplane.control.model_metadata(model)  # an unknown model: NOT_FOUND
            traces = self._dataplane.trace_settings
            changes = {key: list(value.value) or None for key, value in request.settings.items()}
            settings = traces.update(changes, model) if changes else traces.settings(model)
            response = pb.TraceSettingResponse()
            for key, setting in settings.items():
                response.settings[key].value.extend(setting if isinstance(setting, list) else [setting])
            return response
        except Exception as exc:
            await abort(context, exc, "TraceSetting")
