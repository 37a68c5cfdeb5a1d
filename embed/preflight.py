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
    """Health of the proxy (open without a token), then the token itself (a ``Connect`` call, as
    pymilvus makes first), so a missing or wrong token is named before long work starts instead of
    pymilvus's "illegal connection params or server unavailable". ``access`` (token, TLS files)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

    from shardproxy.auth.client import ClientAccess, channel as proxy_channel

    target = uri.split("://", 1)[-1].rstrip("/")
    channel = proxy_channel(target, access if access is not None else ClientAccess())
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]  # a plain Milvus node
            raise Unreachable(f"cannot reach the proxy at {uri}: {e.code().name}; "  # type: ignore[attr-defined]
                              f"{_where_from('--proxy', 'EMBED_PROXY')}") from e
    try:
        milvus_pb2_grpc.MilvusServiceStub(channel).Connect(milvus_pb2.ConnectRequest(), timeout=10)
    except grpc.RpcError as e:
        code = e.code()  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            given = "no token was given" if not getattr(access, "token", "") else "the token was refused"
            raise Unreachable(f"the proxy at {uri} needs a valid token ({given}: {e.details()}); "  # type: ignore[attr-defined]
                              f"{_where_from('--token', 'EMBED_TOKEN / SHARDPROXY_TOKEN')} "
                              "(`shardproxy dev up` prints root's token)") from e
        # anything else: the command's own calls report it
    finally:
        channel.close()
