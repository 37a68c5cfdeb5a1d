"""The RPC wrapper of the Milvus data plane: request id, the caller's metadata for the handlers
(the ``dbname`` header), errors as a Milvus status (or a real gRPC UNIMPLEMENTED), metrics."""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from shardproxy import logs, metrics, resolve
from shardproxy.errors import TRAILER_GRPC_STATUS, NodeError, ProxyError, Unimplemented, grpc_code_of, to_milvus_status

log = logging.getLogger(__name__)

EXTRA_TRAILERS: contextvars.ContextVar[list[tuple[str, str]]] = contextvars.ContextVar("extra_trailers")


def rpc(response: Callable[..., Any] | None) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Wrap one data-plane RPC: errors become a Milvus status in ``response`` (None: the RPC
    returns a bare Status), the precise gRPC code goes into trailing metadata, metrics count it."""

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        method = fn.__name__

        @functools.wraps(fn)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            rid = logs.request_id_from(context.invocation_metadata())
            token = logs.REQUEST_ID.set(rid)
            md_token = resolve.METADATA.set(tuple(context.invocation_metadata() or ()))
            extra = EXTRA_TRAILERS.set([])  # trailers added by the handler (partial results)
            try:
                resp = await fn(self, request, context)
                context.set_trailing_metadata(((logs.REQUEST_ID_HEADER, rid), *EXTRA_TRAILERS.get()))
                return resp
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, the server keeps serving
                code = grpc_code_of(exc).name if not isinstance(exc, NodeError) else "NODE_ERROR"
                if isinstance(exc, ProxyError):
                    log.debug("%s failed: %s", method, exc.message)
                else:
                    log.exception("%s failed unexpectedly", method)
                context.set_trailing_metadata(
                    ((TRAILER_GRPC_STATUS, code), (logs.REQUEST_ID_HEADER, rid), *EXTRA_TRAILERS.get())
                )
                if isinstance(exc, Unimplemented):
                    # as a node (or Milvus) answers an RPC it does not implement: a real gRPC status
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, exc.message)
                status = to_milvus_status(exc)
                return status if response is None else response(status=status)
            finally:
                metrics.RPC_LATENCY.labels(method=method).observe(time.perf_counter() - start)
                metrics.RPCS.labels(method=method, code=code).inc()
                logs.REQUEST_ID.reset(token)
                resolve.METADATA.reset(md_token)
                EXTRA_TRAILERS.reset(extra)

        return wrapper

    return deco
