"""What bench presents to a secured server: extra headers (API keys) and TLS settings.

Both travel inside ``Endpoint``, so every call bench makes (metadata, statistics, infer) carries them,
and both are plain data so they cross to generator processes; SSL contexts and gRPC credentials are
built where they are used.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One header: (name, value). Names are kept as given for REST and lower-cased for gRPC metadata.
Header = tuple[str, str]

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name
# Bench writes these itself; a second copy would break the request's framing or routing.
_RESERVED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "inference-header-content-length",
        "te",
    }
)


class CredentialError(ValueError):
    """A header or TLS setting that cannot be used; the message names the flag."""


def parse_header(text: str) -> Header:
    """``Name: value`` (or perf_analyzer's ``Name:value``) as one header; the value may be empty."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.match(name):
        raise CredentialError(f"-H wants 'Name: value', got {text!r}")
    if name.lower() in _RESERVED:
        raise CredentialError(f"-H {name}: bench sets this header itself")
    if name.lower().endswith("-bin"):
        raise CredentialError(f"-H {name}: binary (-bin) gRPC metadata is not supported")
    if any(c in value for c in "\r\n\0") or not value.isprintable():
        raise CredentialError(f"-H {name}: the value must be printable text on one line")
    return name, value


def request_headers(headers: tuple[str, ...], api_key: str | None) -> tuple[Header, ...]:
    """The headers of ``-H`` flags plus ``Authorization: Bearer <api_key>``, as inferd reads keys."""
    parsed = [parse_header(h) for h in headers]
    if api_key is not None:
        api_key = api_key.strip()
        if not api_key or not api_key.isprintable():
            raise CredentialError("--api-key (or INFERD_API_KEY) is empty or not printable text")
        if any(name.lower() == "authorization" for name, _ in parsed):
            raise CredentialError(
                "--api-key (or INFERD_API_KEY) and -H Authorization both give a credential: keep one"
            )
        parsed.append(("Authorization", f"Bearer {api_key}"))
    return tuple(parsed)


def grpc_metadata(headers: tuple[Header, ...]) -> tuple[Header, ...] | None:
    """Headers as gRPC metadata (keys must be lower case); None when there are none."""
    return tuple((name.lower(), value) for name, value in headers) or None


@dataclass(frozen=True, slots=True)
class ClientTls:
    """TLS towards the server: trust ``ca_file`` (None: the system's trusted CAs) and, for mutual
    TLS, present ``cert_file`` with ``key_file``."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def check(self) -> None:
        """Load every file once, so a bad one fails before any request, naming the flag."""
        if (self.cert_file is None) != (self.key_file is None):
            raise CredentialError("--ssl-cert-file and --ssl-key-file go together (mutual TLS)")
        self.ssl_context()
        for flag, path in (("--ssl-ca-file", self.ca_file), ("--ssl-cert-file", self.cert_file)):
            if path is not None and b"-----BEGIN CERTIFICATE-----" not in _read(flag, path):
                raise CredentialError(f"{flag} {path}: no PEM certificate in it")

    def ssl_context(self) -> ssl.SSLContext:
        """Client context for REST: verifies the server's certificate and host name, TLS 1.2+."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise CredentialError(f"--ssl-ca-file {self.ca_file}: {_reason(exc)}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as exc:
                raise CredentialError(
                    f"--ssl-cert-file {self.cert_file} / --ssl-key-file {self.key_file}: {_reason(exc)}"
                ) from None
        return context

    def grpc_credentials(self) -> Any:
        """``grpc.ChannelCredentials`` with the same files (gRPC wants their bytes, not paths)."""
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=_read("--ssl-ca-file", self.ca_file) if self.ca_file else None,
            private_key=_read("--ssl-key-file", self.key_file) if self.key_file else None,
            certificate_chain=_read("--ssl-cert-file", self.cert_file) if self.cert_file else None,
        )


def _read(flag: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"{flag} {path}: {exc.strerror or exc}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def describe_tls_error(exc: ssl.SSLError) -> str:
    """One line: OpenSSL's reason (or why verification failed), then what to do about it."""
    detail = exc.verify_message if isinstance(exc, ssl.SSLCertVerificationError) else None
    return f"{detail or exc.reason or exc}; {tls_hint(str(exc))}"


def tls_hint(detail: str) -> str:
    """What to do about a failed TLS handshake, judged from the error text (OpenSSL's or gRPC's)."""
    text = detail.upper()
    if any(w in text for w in ("CERTIFICATE_VERIFY_FAILED", "CERTIFICATE VERIFY FAILED", "BAD_SIGNATURE")):
        return "the server's certificate is not trusted: pass --ssl-ca-file with the CA that signed it"
    if "CERTIFICATE_REQUIRED" in text or "CERTIFICATE REQUIRED" in text or "HANDSHAKE_FAILURE" in text:
        return "the server wants a client certificate (mutual TLS): pass --ssl-cert-file and --ssl-key-file"
    if "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text or "UNKNOWN CA" in text:
        return "the server refused the client certificate: is it signed by the CA the server trusts?"
    if "WRONG_VERSION_NUMBER" in text or "WRONG VERSION NUMBER" in text or "RECORD_LAYER" in text:
        return "the server does not seem to speak TLS: use http:// or grpc://"
    return "check the URL's scheme and the --ssl-* files"


def closed_hint(tls: ClientTls) -> str:
    """What to do when a TLS server hangs up without answering: with TLS 1.3 that is how a server
    requiring client certificates refuses a client that has none it trusts."""
    if tls.cert_file is None:
        return (
            "the server closed the connection; if it requires client certificates (mutual TLS), "
            "pass --ssl-cert-file and --ssl-key-file"
        )
    return (
        "the server closed the connection; is the client certificate (--ssl-cert-file) signed by "
        "a CA the server trusts?"
    )
