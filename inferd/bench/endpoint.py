"""Where the server is and its control-plane calls: model metadata and statistics, REST or gRPC.

These run before and after a measurement, never inside it, so they favour plainness (urllib, the sync
gRPC stub) over speed.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

from inferd.bench.credentials import (
    ClientTls,
    Header,
    closed_hint,
    describe_tls_error,
    grpc_metadata,
    tls_hint,
)

Protocol = Literal["http", "grpc"]

# scheme -> (protocol, TLS); TLS servers (inferd's included) keep the usual ports.
_SCHEMES: dict[str, tuple[Protocol, bool]] = {
    "http": ("http", False),
    "https": ("http", True),
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
}
_DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
_CONTROL_TIMEOUT_S = 10.0
_AUTH_HINT = " (pass the key with --api-key or INFERD_API_KEY, or a header with -H)"
_PLAIN_HINT = " (a TLS server hangs up on plain text: if it serves TLS, use https:// or grpcs://)"


class BenchError(Exception):
    """A problem the user must fix (bad URL, unknown model, bad input file); the CLI prints it."""


class ServerRefused(BenchError):
    """The server answered a control-plane call with an error status (``"403"``, ``"NOT_FOUND"``)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def unauthorized(self) -> bool:
        return self.status in ("401", "403", "UNAUTHENTICATED", "PERMISSION_DENIED")


@dataclass(frozen=True, slots=True)
class Endpoint:
    protocol: Protocol
    host: str
    port: int
    # None: plain text. Otherwise TLS, verifying the server (and presenting a client certificate).
    tls: ClientTls | None = None
    # Sent with every call, REST headers and gRPC metadata alike (API keys, tenant ids, ...).
    headers: tuple[Header, ...] = ()

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``http(s)://host:port``, ``grpc(s)://host:port`` or a bare ``host:port`` (REST, like
        perf_analyzer). ``https``/``grpcs`` turn on TLS with the system's trusted CAs."""
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise BenchError(
                f"unsupported scheme '{parts.scheme}' in {url}: use http://, https://, grpc:// or grpcs://"
            )
        protocol, tls = _SCHEMES[scheme]
        if parts.path not in ("", "/"):
            raise BenchError(f"give the server root, not a path: {url}")
        if not parts.hostname:
            raise BenchError(f"no host in {url}")
        try:
            port = parts.port or _DEFAULT_PORTS[protocol]
        except ValueError as exc:
            raise BenchError(f"bad port in {url}: {exc}") from None
        return cls(protocol, parts.hostname, port, ClientTls() if tls else None)

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        scheme = self.protocol + ("s" if self.tls is not None else "")
        return f"{scheme}://{self.authority}"


def model_metadata(endpoint: Endpoint, model: str, version: str = "") -> dict[str, Any]:
    """The V2 model metadata document: name, inputs and outputs with datatypes and shapes."""
    if endpoint.protocol == "http":
        return _http_get(endpoint, _model_path(model, version))
    from google.protobuf import json_format

    from inferd.protocol._generated import grpc_service_pb2 as pb

    def call(stub: Any, metadata: Any) -> Any:
        return stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version), metadata=metadata)

    reply = _grpc_call(endpoint, call, f"model metadata of '{model}'")
    document: dict[str, Any] = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    for tensor in [*document.get("inputs", []), *document.get("outputs", [])]:
        tensor["shape"] = [int(d) for d in tensor.get("shape", [])]
    return document


def model_statistics(endpoint: Endpoint, model: str, version: str = "") -> dict[str, Any] | None:
    """The statistics extension's document for one model, or None when the server has no such endpoint
    (or refuses it: inferd's keys need the ``metrics`` API for it)."""
    try:
        return fetch_model_statistics(endpoint, model, version)
    except BenchError:
        return None


def fetch_model_statistics(endpoint: Endpoint, model: str, version: str = "") -> dict[str, Any] | None:
    """As ``model_statistics``, but a failed call raises BenchError (ServerRefused for an error status)."""
    if endpoint.protocol == "http":
        document = _http_get(endpoint, _model_path(model, version) + "/stats")
    else:
        from google.protobuf import json_format

        from inferd.protocol._generated import grpc_service_pb2 as pb

        def call(stub: Any, metadata: Any) -> Any:
            return stub.ModelStatistics(
                pb.ModelStatisticsRequest(name=model, version=version), metadata=metadata
            )

        reply = _grpc_call(endpoint, call, "statistics")
        document = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    stats = document.get("model_stats") or []
    return stats[0] if stats else None


def _model_path(model: str, version: str) -> str:
    path = "/v2/models/" + urllib.parse.quote(model, safe="")
    return path + ("/versions/" + urllib.parse.quote(version, safe="") if version else "")


def _http_get(endpoint: Endpoint, path: str) -> dict[str, Any]:
    url = endpoint.base_url + path
    request = urllib.request.Request(url, headers=dict(endpoint.headers))
    context = endpoint.tls.ssl_context() if endpoint.tls is not None else None
    try:
        with urllib.request.urlopen(request, timeout=_CONTROL_TIMEOUT_S, context=context) as reply:
            document: dict[str, Any] = json.loads(reply.read())
            return document
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        hint = _AUTH_HINT if exc.code == 401 and not endpoint.headers else ""
        raise ServerRefused(f"GET {url} answered {exc.code}: {detail}{hint}", str(exc.code)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ssl.SSLError):
            raise BenchError(f"TLS with {endpoint.authority} failed: {describe_tls_error(reason)}") from None
        if endpoint.tls is not None and isinstance(reason, ConnectionResetError):
            raise BenchError(f"TLS with {endpoint.authority} failed: {closed_hint(endpoint.tls)}") from None
        hint = _PLAIN_HINT if isinstance(reason, ConnectionResetError) and endpoint.tls is None else ""
        raise BenchError(f"cannot reach {url}: {reason}{hint}") from None
    except json.JSONDecodeError:
        raise BenchError(f"GET {url} did not answer JSON") from None


def _grpc_call(endpoint: Endpoint, call: Any, what: str) -> Any:
    import grpc

    from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

    if endpoint.tls is None:
        channel = grpc.insecure_channel(endpoint.authority)
    else:
        channel = grpc.secure_channel(endpoint.authority, endpoint.tls.grpc_credentials())
    with channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            return call(stub, grpc_metadata(endpoint.headers))
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if endpoint.tls is not None and code == grpc.StatusCode.UNAVAILABLE:
                if _is_tls(details):
                    hint = tls_hint(details)
                elif "SOCKET CLOSED" in details.upper():
                    hint = closed_hint(endpoint.tls)
                else:
                    hint = ""
                if hint:
                    raise BenchError(f"TLS with {endpoint.authority} failed: {hint} ({details})") from None
            if code == grpc.StatusCode.UNAUTHENTICATED and not endpoint.headers:
                hint = _AUTH_HINT
            elif endpoint.tls is None and "SOCKET CLOSED" in details.upper():
                hint = _PLAIN_HINT
            else:
                hint = ""
            raise ServerRefused(
                f"gRPC {what} at {endpoint.authority} failed: {code.name} {details}{hint}", code.name
            ) from None


def _is_tls(details: str) -> bool:
    text = details.upper()
    return any(w in text for w in ("SSL", "TLS", "HANDSHAKE", "CERTIFICATE"))
