"""TLS for the proxy's gRPC port: server TLS, or mutual TLS when a client CA is configured,
with certificates reloaded from disk without a restart (checked at each new connection, the
files are read again when their modification time changes)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc

from shardproxy.auth import metrics

log = logging.getLogger(__name__)


class ReloadingCredentials:
    def __init__(self, cert_path: str, key_path: str, client_ca_path: str = "") -> None:
        self.cert_path, self.key_path, self.client_ca_path = cert_path, key_path, client_ca_path
        for p in (cert_path, key_path, client_ca_path):
            if p and not Path(p).is_file():
                raise FileNotFoundError(f"TLS file not found: {p}")
        self._stamp = self._mtimes()

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(os.stat(p).st_mtime_ns for p in (self.cert_path, self.key_path, self.client_ca_path) if p)

    def _config(self) -> grpc.ServerCertificateConfiguration:
        key = Path(self.key_path).read_bytes()
        cert = Path(self.cert_path).read_bytes()
        ca = Path(self.client_ca_path).read_bytes() if self.client_ca_path else None
        metrics.CERT_RELOADS.inc()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return None
            config = self._config()
            self._stamp = stamp
            log.info("TLS certificate reloaded from %s", self.cert_path)
            return config
        except Exception as exc:  # noqa: BLE001 - keep serving with the old certificate
            log.warning("TLS certificate reload failed (keeping the old one): %s", exc)
            return None

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._config(), self._fetch, require_client_authentication=bool(self.client_ca_path))


def channel_credentials(ca_path: str = "", cert_path: str = "", key_path: str = "") -> grpc.ChannelCredentials:
    """Client side (node channels, admin CLI): trust ``ca_path``, present a client cert if given."""
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_path).read_bytes() if ca_path else None,
        private_key=Path(key_path).read_bytes() if key_path else None,
        certificate_chain=Path(cert_path).read_bytes() if cert_path else None,
    )
