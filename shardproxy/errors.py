"""The one place that maps failures to status codes.

Two wire conventions meet in the proxy:

* the **Milvus data plane** (what pymilvus speaks) reports errors inside the response, in a
  ``common.Status`` with a legacy ``error_code`` and a numeric ``code``; pymilvus turns that
  into ``MilvusException(code, reason)``. The proxy answers the same way, and also sends the
  precise gRPC status name as trailing metadata (``x-shardproxy-grpc-status``) for callers
  who want it.
* **our own APIs** (admin, image search) use real gRPC status codes.

Every error raised inside the proxy is a :class:`ProxyError` subclass carrying a gRPC code;
this module turns it into either form.
"""

from __future__ import annotations

import grpc
from pymilvus.grpc_gen import common_pb2

# Milvus "merr" codes (status.code) and legacy ErrorCode values (status.error_code).
MILVUS_CODE_SUCCESS = 0
MILVUS_CODE_UNEXPECTED = 1
MILVUS_CODE_SERVICE_UNAVAILABLE = 2
MILVUS_CODE_UNIMPLEMENTED = 10
MILVUS_CODE_COLLECTION_NOT_FOUND = 100
MILVUS_CODE_PARAMETER_INVALID = 1100
MILVUS_CODE_PRECONDITION = 2000

_LEGACY = common_pb2.ErrorCode
TRAILER_GRPC_STATUS = "x-shardproxy-grpc-status"


class ProxyError(Exception):
    """Base class: a failure with a gRPC code and a message meant for the caller."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    milvus_code: int = MILVUS_CODE_UNEXPECTED
    legacy_code: int = _LEGACY.UnexpectedError

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ProxyError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    milvus_code = MILVUS_CODE_PARAMETER_INVALID
    legacy_code = _LEGACY.IllegalArgument


class CollectionNotFound(ProxyError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    milvus_code = MILVUS_CODE_COLLECTION_NOT_FOUND
    legacy_code = _LEGACY.CollectionNotExists

    def __init__(self, name: str) -> None:
        super().__init__(f"collection not found[collection={name}]")
        self.collection = name


class NotFound(ProxyError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    milvus_code = MILVUS_CODE_PARAMETER_INVALID
    legacy_code = _LEGACY.IllegalArgument


class AlreadyExists(ProxyError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    milvus_code = MILVUS_CODE_PARAMETER_INVALID
    legacy_code = _LEGACY.IllegalArgument


class FailedPrecondition(ProxyError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    milvus_code = MILVUS_CODE_PRECONDITION
    legacy_code = _LEGACY.UnexpectedError


class Unavailable(ProxyError):
    """A node (or all replicas of a shard) could not answer."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    milvus_code = MILVUS_CODE_SERVICE_UNAVAILABLE
    legacy_code = _LEGACY.UnexpectedError


class DeadlineExceeded(ProxyError):
    """The caller's deadline expired while the proxy waited for nodes (not a node's fault)."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    milvus_code = MILVUS_CODE_SERVICE_UNAVAILABLE
    legacy_code = _LEGACY.UnexpectedError


class DeadlineBeforeSend(DeadlineExceeded):
    """The caller had no time left, so the node call was never sent."""


class Unimplemented(ProxyError):
    """A request field or feature shardproxy does not implement: a Milvus status naming it."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    milvus_code = MILVUS_CODE_UNIMPLEMENTED
    legacy_code = _LEGACY.UnexpectedError


class NodeUnimplemented(Unimplemented):
    """A node answered gRPC UNIMPLEMENTED (it lacks the RPC): the proxy answers the same gRPC status,
    as one node would. A request feature the proxy itself does not implement is a plain
    :class:`Unimplemented`, answered as a Milvus status naming the feature."""


class NodeError(ProxyError):
    """A node answered with a Milvus error status; passed through to the caller unchanged."""

    grpc_code = grpc.StatusCode.UNKNOWN

    def __init__(self, node_id: str, status: common_pb2.Status) -> None:
        super().__init__(status.reason or f"node {node_id} failed with code {status.code}")
        self.node_id = node_id
        self.status = status


def status_ok() -> common_pb2.Status:
    return common_pb2.Status(error_code=_LEGACY.Success, code=MILVUS_CODE_SUCCESS, reason="")


def to_milvus_status(exc: BaseException) -> common_pb2.Status:
    """Milvus-style status for any exception raised while serving a data-plane RPC."""
    if isinstance(exc, NodeError):
        return exc.status
    if isinstance(exc, ProxyError):
        return common_pb2.Status(
            error_code=exc.legacy_code, code=exc.milvus_code, reason=exc.message
        )
    return common_pb2.Status(
        error_code=_LEGACY.UnexpectedError,
        code=MILVUS_CODE_UNEXPECTED,
        reason=f"internal error in shardproxy: {type(exc).__name__}: {exc}",
    )


def grpc_code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, ProxyError):
        return exc.grpc_code
    return grpc.StatusCode.INTERNAL


def is_ok(status: common_pb2.Status) -> bool:
    return status.code == MILVUS_CODE_SUCCESS and status.error_code == _LEGACY.Success
