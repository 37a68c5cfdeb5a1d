"""The wrapper every data-plane RPC goes through, and the UNIMPLEMENTED installer.

A handler decorated with :func:`rpc` returns its response, or :class:`Reply` (response plus
the :class:`~shardproxy.coverage.Coverage` of a scattered read), or raises. The wrapper binds
the request id, turns any exception into a Milvus status in the response (via
:mod:`shardproxy.errors`), sends the precise gRPC code, the request id and the coverage
(``x-shardproxy-partial``, ``x-shardproxy-missing-shards``) as trailing metadata, and counts
the call in the metrics.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from shardproxy import deadline, logs, metrics, resolve
from shardproxy.coverage import COMPLETE, Coverage
from shardproxy.errors import (
    TRAILER_GRPC_STATUS,
    NodeError,
    NodeUnimplemented,
    ProxyError,
    grpc_code_of,
    to_milvus_status,
)

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Reply:
    """A response and what it covered (partial results are announced in trailing metadata)."""

    response: Any
    coverage: Coverage = COMPLETE


def rpc(response: Callable[..., Any] | None) -> Callable[[Handler], Handler]:
    """Wrap one data-plane RPC: errors become a Milvus status in ``response`` (None: the RPC
    returns a bare Status), the precise gRPC code goes into trailing metadata, metrics count it."""

    def deco(fn: Handler) -> Handler:
        method = fn.__name__

        @functools.wraps(fn)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            rid = logs.request_id_from(context.invocation_metadata())
            token = logs.REQUEST_ID.set(rid)
            # the caller's deadline travels with every node call this request makes
            dl = deadline.set_remaining(context.time_remaining())
            md_token = resolve.METADATA.set(tuple(context.invocation_metadata() or ()))
            try:
                out = await fn(self, request, context)
                reply = out if isinstance(out, Reply) else Reply(out)
                context.set_trailing_metadata(((logs.REQUEST_ID_HEADER, rid), *reply.coverage.trailers()))
                return reply.response
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, the server keeps serving
                code = grpc_code_of(exc).name if not isinstance(exc, NodeError) else "NODE_ERROR"
                if isinstance(exc, ProxyError):
                    log.debug("%s failed: %s", method, exc.message)
                else:
                    log.exception("%s failed unexpectedly", method)
                context.set_trailing_metadata(((TRAILER_GRPC_STATUS, code), (logs.REQUEST_ID_HEADER, rid)))
                if isinstance(exc, NodeUnimplemented):
                    # what a node (or Milvus) answers for an RPC it lacks: a real gRPC status
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, exc.message)
                status = to_milvus_status(exc)
                return status if response is None else response(status=status)
            finally:
                metrics.RPC_LATENCY.labels(method=method).observe(time.perf_counter() - start)
                metrics.RPCS.labels(method=method, code=code).inc()
                logs.REQUEST_ID.reset(token)
                deadline.reset(dl)
                resolve.METADATA.reset(md_token)

        return wrapper

    return deco


def _unimplemented(name: str) -> Handler:
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metrics.RPCS.labels(method=name, code="UNIMPLEMENTED").inc()
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"shardproxy does not implement the Milvus RPC {name}")

    handler.__name__ = name
    handler.unimplemented = True  # type: ignore[attr-defined]
    return handler


def implemented_rpcs(cls: type) -> list[str]:
    """MilvusService RPCs ``cls`` (or one of its mixins) implements."""
    base = milvus_pb2_grpc.MilvusServiceServicer
    service = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
    return sorted(
        n for n in service.methods_by_name
        if getattr(cls, n, None) is not getattr(base, n, None) and not getattr(getattr(cls, n), "unimplemented", False)
    )


def install_unimplemented(cls: type) -> type:
    """Every MilvusService RPC ``cls`` does not implement answers UNIMPLEMENTED, naming itself."""
    service = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
    done = set(implemented_rpcs(cls))
    for name in service.methods_by_name:
        if name not in done:
            setattr(cls, name, _unimplemented(name))
    return cls
