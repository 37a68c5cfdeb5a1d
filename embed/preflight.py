"""Connection checks before long work starts (an import adapts the model for minutes first): each
names the address it tried and the flag or variable that sets it."""

from __future__ import annotations

from typing import Any

from embed.errors import PipelineError


class Unreachable(PipelineError):
    """A service the command needs does not answer."""


def _where_from(flag: str, env: str) -> str:
    from shardproxy import devprofile

    prof = devprofile.read()
    if prof:
        return f"set {flag} or {env}, or check the dev cluster recorded in {devprofile.path()}"
    return f"set {flag} or {env}, or start `shardproxy dev up` ({devprofile.hint()})"


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5).ping()
    except (redis.RedisError, ValueError) as e:  # ValueError: not a redis:// URL
        raise Unreachable(f"cannot reach the job queue (Redis/Valkey) at {url}: {e}; "
                          f"{_where_from('--redis-url', 'EMBED_REDIS_URL')}") from e


def check_proxy(uri: str, access: Any = None) -> None:
    """Health of the proxy (open without a token); ``access`` (token, TLS files) reaches a TLS proxy."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from shardproxy.auth.client import ClientAccess, channel as proxy_channel

    target = uri.split("://", 1)[-1].rstrip("/")
    channel = proxy_channel(target, access if access is not None else ClientAccess())
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]  # a plain Milvus node
            raise Unreachable(f"cannot reach the proxy at {uri}: {e.code().name}; "  # type: ignore[attr-defined]
                              f"{_where_from('--proxy', 'EMBED_PROXY')}") from e
    finally:
        channel.close()
