"""The Milvus data plane of the proxy: ``MilvusProxyServicer`` (a grpc.aio
``MilvusServiceServicer``) composed from one handler mixin per concern.

Layers (planning apart from execution, as in Vitess's vtgate):

* :mod:`shardproxy.rpc` wraps every RPC (request id, errors to Milvus statuses via
  :mod:`shardproxy.errors`, trailers from the returned :class:`~shardproxy.rpc.Reply`, metrics)
  and answers UNIMPLEMENTED, naming the RPC, for every MilvusService RPC no mixin implements;
* :mod:`shardproxy.handlers` hold thin handlers: look up, validate, plan with
  :class:`shardproxy.placement.Placement`, execute with :class:`shardproxy.scatter.Scatter`,
  build the response;
* :mod:`shardproxy.scatter` is the one executor (fan-out, retries, circuits, partial policy,
  hinted handoff, per-node metrics).

Adding a group of RPCs (partitions, databases, aliases, ...): write
``shardproxy/handlers/<concern>.py`` with ``class <Concern>Handlers(HandlerBase)`` whose methods
are named after the Milvus RPCs and decorated with ``@rpc(<ResponseType>)`` (``@rpc(None)`` for
RPCs answering a bare ``Status``); return the response (or ``Reply(response, coverage)`` for a
scattered read); raise :mod:`shardproxy.errors` exceptions for failures. Then add the class to
``MIXINS`` below. The RPCs it implements stop answering UNIMPLEMENTED automatically.
"""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2_grpc

from shardproxy.auth.rbac_handlers import RbacHandlers
from shardproxy.handlers.aliases import AliasHandlers
from shardproxy.handlers.alter import AlterHandlers
from shardproxy.handlers.connection import ConnectionHandlers
from shardproxy.handlers.databases import DatabaseHandlers
from shardproxy.handlers.ddl import DdlHandlers
from shardproxy.handlers.partitions import PartitionHandlers
from shardproxy.handlers.reads import ReadHandlers
from shardproxy.handlers.search_ext import SearchExtHandlers
from shardproxy.handlers.writes import WriteHandlers
from shardproxy.rpc import install_unimplemented

MIXINS: tuple[type, ...] = (
    ConnectionHandlers, DdlHandlers, WriteHandlers, ReadHandlers, SearchExtHandlers,
    DatabaseHandlers, PartitionHandlers, AliasHandlers, AlterHandlers, RbacHandlers,
)


class MilvusProxyServicer(*MIXINS, milvus_pb2_grpc.MilvusServiceServicer):  # type: ignore[misc]
    """Every Milvus RPC the proxy serves; see the module docstring for how to add more."""


install_unimplemented(MilvusProxyServicer)
