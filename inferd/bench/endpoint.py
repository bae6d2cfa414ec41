"""Where the server is and its control-plane calls: model metadata and statistics, REST or gRPC.

These run before and after a measurement, never inside it, so they favour plainness (urllib, the sync
gRPC stub) over speed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

Protocol = Literal["http", "grpc"]

_DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
_CONTROL_TIMEOUT_S = 10.0


class BenchError(Exception):
    """A problem the user must fix (bad URL, unknown model, bad input file); the CLI prints it."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    protocol: Protocol
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``http://host:port``, ``grpc://host:port`` or a bare ``host:port`` (REST, like perf_analyzer)."""
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise BenchError(f"unsupported scheme '{parts.scheme}' in {url}: use http:// or grpc://")
        if parts.path not in ("", "/"):
            raise BenchError(f"give the server root, not a path: {url}")
        if not parts.hostname:
            raise BenchError(f"no host in {url}")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise BenchError(f"bad port in {url}: {exc}") from None
        protocol: Protocol = "grpc" if scheme == "grpc" else "http"
        return cls(protocol, parts.hostname, port)

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


def model_metadata(endpoint: Endpoint, model: str, version: str = "") -> dict[str, Any]:
    """The V2 model metadata document: name, inputs and outputs with datatypes and shapes."""
    if endpoint.protocol == "http":
        return _http_get(endpoint, _model_path(model, version))
    from google.protobuf import json_format

    from inferd.protocol._generated import grpc_service_pb2 as pb

    def call(stub: Any) -> Any:
        return stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version))

    reply = _grpc_call(endpoint, call, f"model metadata of '{model}'")
    document: dict[str, Any] = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    for tensor in [*document.get("inputs", []), *document.get("outputs", [])]:
        tensor["shape"] = [int(d) for d in tensor.get("shape", [])]
    return document


def model_statistics(endpoint: Endpoint, model: str, version: str = "") -> dict[str, Any] | None:
    """The statistics extension's document for one model, or None when the server has no such endpoint."""
    try:
        if endpoint.protocol == "http":
            document = _http_get(endpoint, _model_path(model, version) + "/stats")
        else:
            from google.protobuf import json_format

            from inferd.protocol._generated import grpc_service_pb2 as pb

            def call(stub: Any) -> Any:
                return stub.ModelStatistics(pb.ModelStatisticsRequest(name=model, version=version))

            reply = _grpc_call(endpoint, call, "statistics")
            document = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    except BenchError:
        return None
    stats = document.get("model_stats") or []
    return stats[0] if stats else None


def _model_path(model: str, version: str) -> str:
    path = "/v2/models/" + urllib.parse.quote(model, safe="")
    return path + ("/versions/" + urllib.parse.quote(version, safe="") if version else "")


def _http_get(endpoint: Endpoint, path: str) -> dict[str, Any]:
    url = f"http://{endpoint.authority}{path}"
    try:
        with urllib.request.urlopen(url, timeout=_CONTROL_TIMEOUT_S) as reply:
            document: dict[str, Any] = json.loads(reply.read())
            return document
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise BenchError(f"GET {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise BenchError(f"cannot reach {url}: {exc}") from None
    except json.JSONDecodeError:
        raise BenchError(f"GET {url} did not answer JSON") from None


def _grpc_call(endpoint: Endpoint, call: Any, what: str) -> Any:
    import grpc

    from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(endpoint.authority) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            return call(stub)
        except grpc.RpcError as exc:
            raise BenchError(
                f"gRPC {what} at {endpoint.authority} failed: {exc.code().name} {exc.details()}"
            ) from None
