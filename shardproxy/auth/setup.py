"""Wires authentication into the proxy's server: the interceptor, the port (TLS or not), the
node credential, the audit log, and the token in-process clients (image search) use."""

from __future__ import annotations

import logging

import grpc
import redis.asyncio as aioredis

from shardproxy.auth import audit, nodecreds
from shardproxy.auth.interceptor import AuthInterceptor
from shardproxy.auth.service import AuthService
from shardproxy.auth.tls import ReloadingCredentials
from shardproxy.config import ProxySettings

log = logging.getLogger(__name__)


class ProxyAuth:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.redis = aioredis.from_url(settings.redis_url)
        self.service = AuthService(self.redis, enabled=settings.auth_enabled, rate=settings.rate_limit_rps,
                                   burst=settings.rate_limit_burst)
        self.interceptor = AuthInterceptor(self.service)
        self.interceptors = [self.interceptor]
        self.internal_port = 0
        audit.setup(settings.audit_log)
        nodecreds.configure(nodecreds.NodeAccess(settings.node_token_value(), settings.node_tls_ca,
                                                 settings.node_tls_cert, settings.node_tls_key))
        if not settings.auth_enabled:
            log.warning("authentication is OFF (SHARDPROXY_AUTH_ENABLED=false): anyone reaching the port may "
                        "do anything")

    @property
    def tls(self) -> bool:
        return bool(self.settings.tls_cert)

    def bind(self, server: grpc.aio.Server) -> int:
        """Open the public port (TLS when configured); with TLS, also a loopback-only plain port
        for in-process clients, still behind the interceptor."""
        s = self.settings
        if not self.tls:
            return server.add_insecure_port(s.address)
        creds = ReloadingCredentials(s.tls_cert, s.tls_key, s.tls_client_ca).server_credentials()
        port = server.add_secure_port(s.address, creds)
        self.internal_port = server.add_insecure_port("127.0.0.1:0")
        return port

    def internal_uri(self, public_port: int) -> str:
        return f"http://127.0.0.1:{self.internal_port or public_port}"

    def internal_token(self) -> str:
        return self.service.internal_token

    async def start(self) -> None:
        await self.service.start(self.settings.root_password_value(), self.settings.root_password_reset)

    async def close(self) -> None:
        await self.service.close()
        await self.redis.aclose()
