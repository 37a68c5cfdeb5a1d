"""How the proxy (and the migrators it starts) reach the Milvus nodes: with its own service
credential (``SHARDPROXY_NODE_TOKEN``, sent as the ``authorization`` header pymilvus would
send) and over TLS when ``SHARDPROXY_NODE_TLS_CA`` is set. milvus-lite nodes have no auth;
the token is only sent when configured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from shardproxy.auth.passwords import encode_token
from shardproxy.auth.tls import channel_credentials


@dataclass(frozen=True)
class NodeAccess:
    token: str = ""
    ca: str = ""
    cert: str = ""
    key: str = ""


_ACCESS: NodeAccess | None = None


def configure(access: NodeAccess) -> None:
    global _ACCESS
    _ACCESS = access


def access() -> NodeAccess:
    """The configured access, or the one the environment describes (migrator processes)."""
    if _ACCESS is None:
        from shardproxy.config import ProxySettings

        s = ProxySettings()
        configure(NodeAccess(s.node_token_value(), s.node_tls_ca, s.node_tls_cert, s.node_tls_key))
    assert _ACCESS is not None
    return _ACCESS


class _HeaderAdder(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, value: str) -> None:
        self.value = value

    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        md = list(details.metadata or ()) + [("authorization", self.value)]
        details = grpc.aio.ClientCallDetails(details.method, details.timeout, grpc.aio.Metadata(*md),
                                             details.credentials, details.wait_for_ready)
        return await continuation(details, request)


def node_channel(address: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
    acc = access()
    interceptors = [_HeaderAdder(encode_token(acc.token))] if acc.token else None
    if acc.ca:
        creds = channel_credentials(acc.ca, acc.cert, acc.key)
        return grpc.aio.secure_channel(address, creds, options=list(options), interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)
