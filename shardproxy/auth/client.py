"""The client side, in one place: pymilvus keyword arguments and plain gRPC channels that reach
a proxy with a token and, when the proxy serves TLS, its CA (and a client certificate for
mutual TLS). Used by DevCluster, the CLIs, the embed pipeline, benchmarks and tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from shardproxy.auth.passwords import encode_token
from shardproxy.auth.tls import channel_credentials


@dataclass(frozen=True)
class ClientAccess:
    token: str = ""  # user:password or an API key
    ca: str = ""  # PEM CA of the proxy's certificate: connect with TLS
    cert: str = ""  # PEM client certificate (mutual TLS)
    key: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.ca)


def pymilvus_kwargs(address: str, access: ClientAccess, **extra: Any) -> dict[str, Any]:
    """``MilvusClient(**pymilvus_kwargs(...))`` the way pymilvus documents TLS and tokens."""
    host = address.split("://", 1)[-1]
    kw: dict[str, Any] = {"uri": f"{'https' if access.tls else 'http'}://{host}"}
    if access.token:
        kw["token"] = access.token
    if access.tls:
        kw["secure"] = True
        if access.cert and access.key:
            kw.update(client_pem_path=access.cert, client_key_path=access.key, ca_pem_path=access.ca)
        else:
            kw["server_pem_path"] = access.ca
    return {**kw, **extra}


class _SyncHeaderAdder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, value: str) -> None:
        self.value = value

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        md = list(details.metadata or ()) + [("authorization", self.value)]
        return _Details(details.method, details.timeout, md, details.credentials,
                        getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: Any, metadata: Any, credentials: Any, wait_for_ready: Any,
                 compression: Any) -> None:
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression


def channel(address: str, access: ClientAccess, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A blocking channel to the proxy (admin stub, image search stub) carrying the token."""
    target = address.split("://", 1)[-1]
    if access.tls:
        ch = grpc.secure_channel(target, channel_credentials(access.ca, access.cert, access.key), options=options)
    else:
        ch = grpc.insecure_channel(target, options=options)
    if access.token:
        ch = grpc.intercept_channel(ch, _SyncHeaderAdder(encode_token(access.token)))
    return ch


def access_from_env(token: str | None = None) -> ClientAccess:
    """``SHARDPROXY_TOKEN`` / ``SHARDPROXY_CA`` / ``SHARDPROXY_CLIENT_CERT`` / ``SHARDPROXY_CLIENT_KEY``."""
    import os

    return ClientAccess(token if token is not None else os.environ.get("SHARDPROXY_TOKEN", ""),
                        os.environ.get("SHARDPROXY_CA", ""), os.environ.get("SHARDPROXY_CLIENT_CERT", ""),
                        os.environ.get("SHARDPROXY_CLIENT_KEY", ""))
