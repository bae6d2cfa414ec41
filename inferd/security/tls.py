"""TLS for both front-ends from one set of files: server certificate and key, optional client CA (mTLS)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    # When set, clients must present a certificate signed by this CA (mutual TLS).
    client_ca_file: Path | None = None

    def check(self) -> None:
        """Fail at start-up, naming the file, rather than at the first handshake."""
        for path in (self.cert_file, self.key_file, self.client_ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        self.ssl_context()  # loads and validates the certificate, key and CA

    def ssl_context(self) -> ssl.SSLContext:
        """Server-side context for the REST front-end: TLS 1.2 or newer."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file is not None:
                context.load_verify_locations(cafile=self.client_ca_file)
                context.verify_mode = ssl.CERT_REQUIRED
        except ssl.SSLError as exc:
            raise ValueError(f"cannot load TLS files {self.cert_file}, {self.key_file}: {exc}") from None
        return context
