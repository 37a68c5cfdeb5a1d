"""Partitions: Create/Drop/Has/ShowPartitions, Load/ReleasePartitions, GetPartitionStatistics.

Every node holds every partition (a partition is a slice of each node's shard of the
collection). Partitions the user creates are recorded in the collection's Redis hash so a node
that joins or restarts gets them (:meth:`shardproxy.nodepool.NodeClient.sync`). Partition-key
collections (``num_partitions``) are created by each node from the schema; the proxy records
nothing for them. Partition ids are the proxy's own (:func:`shardproxy.catalog.synthetic_id`),
the same on every proxy: the nodes number their partitions independently and those ids never
reach a caller.
"""

from __future__ import annotations

from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from shardproxy import ddlrules
from shardproxy.catalog import DEFAULT_PARTITION, synthetic_id
from shardproxy.errors import AlreadyExists, InvalidArgument, ProxyError, Unavailable, status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.handlers.lookup import kv
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.rpc import rpc


class PartitionNotFound(ProxyError):
    """Milvus's ``ErrPartitionNotFound`` (code 200)."""

    milvus_code = 200

    def __init__(self, name: str) -> None:
        import grpc

        super().__init__(f"partition not found[partition={name}]")
        self.grpc_code = grpc.StatusCode.NOT_FOUND


def known_partitions(rec: CollectionRecord) -> list[str]:
    return [DEFAULT_PARTITION, *rec.partitions]


def missing_partition(rec: CollectionRecord, names: list[str]) -> str | None:
    """The first of ``names`` the collection does not have (pure; partition-key collections are
    checked by the nodes, which own their generated partitions)."""
    if rec.partition_key:
        return None
    have = set(known_partitions(rec))
    return next((n for n in names if n and n not in have), None)


class PartitionHandlers(HandlerBase):
    async def _check_partitions(self, rec: CollectionRecord, names: list[str]) -> None:
        """Refuse partitions that do not exist, with the nodes' own error (asked with a
        harmless GetPartitionStatistics, never with the write itself)."""
        missing = missing_partition(rec, names)
        if missing is not None:
            await self._native_error(milvus_pb2.GetPartitionStatisticsRequest(
                db_name=rec.db, collection_name=rec.name, partition_name=missing), PartitionNotFound(missing))

    @rpc(None)
    async def CreatePartition(self, request: milvus_pb2.CreatePartitionRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        ddlrules.validate_partition_name(request.partition_name)
        name = request.partition_name
        if rec.partition_key or name in known_partitions(rec):
            await self._native_error(request, AlreadyExists(
                f"partition already exists[partition={name}]" if not rec.partition_key else
                "disable create partition if partition key mode is used"))
        if len(known_partitions(rec)) >= ddlrules.MAX_PARTITION_NUM:
            raise InvalidArgument(f"partition number ({len(known_partitions(rec))}) exceeds max configuration "
                                  f"({ddlrules.MAX_PARTITION_NUM}), collection: {rec.name}")

        async def ensure(c: NodeClient) -> None:
            has = await c.call("HasPartition", milvus_pb2.HasPartitionRequest(
                db_name=rec.db, collection_name=rec.name, partition_name=name))
            if not has.value:
                await c.call("CreatePartition", request)

        await self._broadcast("CreatePartition", ensure)
        await self.cluster.store.catalog.add_partition(rec.key, name)
        self._forget(rec)
        return status_ok()

    @rpc(None)
    async def DropPartition(self, request: milvus_pb2.DropPartitionRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        name = request.partition_name
        if name == DEFAULT_PARTITION or rec.partition_key:
            await self._native_error(request, InvalidArgument("default partition cannot be deleted"))
        if name not in rec.partitions:
            await self._native_error(request, PartitionNotFound(name))

        async def ensure(c: NodeClient) -> None:
            has = await c.call("HasPartition", milvus_pb2.HasPartitionRequest(
                db_name=rec.db, collection_name=rec.name, partition_name=name))
            if has.value:
                await c.call("DropPartition", request)

        await self._broadcast("DropPartition", ensure)
        await self.cluster.store.catalog.drop_partition(rec.key, name)
        self._forget(rec)
        return status_ok()

    @rpc(milvus_pb2.BoolResponse)
    async def HasPartition(self, request: milvus_pb2.HasPartitionRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        if rec.partition_key:
            return await self._first_node("HasPartition", request)
        return milvus_pb2.BoolResponse(status=status_ok(), value=request.partition_name in known_partitions(rec))

    @rpc(milvus_pb2.ShowPartitionsResponse)
    async def ShowPartitions(self, request: milvus_pb2.ShowPartitionsRequest, context: Any) -> Any:
        """The names, order and load percentages come from one node (all hold the same
        partitions); ids and creation times are the proxy's, the same on every proxy."""
        rec = await self._resolve(request, context)
        resp = await self._first_node("ShowPartitions", request)
        out = milvus_pb2.ShowPartitionsResponse()
        out.CopyFrom(resp)
        del out.partitionIDs[:]
        out.partitionIDs.extend(synthetic_id("partition", rec.key, n) for n in out.partition_names)
        if out.created_timestamps or out.created_utc_timestamps:
            ts = int(rec.created_at * 1000)
            del out.created_timestamps[:]
            del out.created_utc_timestamps[:]
            out.created_timestamps.extend(ts << 18 for _ in out.partition_names)
            out.created_utc_timestamps.extend(ts for _ in out.partition_names)
        return out

    @rpc(milvus_pb2.GetPartitionStatisticsResponse)
    async def GetPartitionStatistics(self, request: milvus_pb2.GetPartitionStatisticsRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        await self._check_partitions(rec, [request.partition_name])
        results = await self._broadcast("GetPartitionStatistics", request, self.cluster.search_clients())
        total = sum(int(kv(r.stats).get("row_count", "0")) for r in results.values())
        return milvus_pb2.GetPartitionStatisticsResponse(
            status=status_ok(), stats=[common_pb2.KeyValuePair(key="row_count", value=str(total))]
        )

    @rpc(None)
    async def LoadPartitions(self, request: milvus_pb2.LoadPartitionsRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        names = list(request.partition_names)
        if not names:
            raise InvalidArgument("partition names should not be empty")
        await self._check_partitions(rec, names)
        await self._broadcast("LoadPartitions", request)
        if not rec.loaded:
            await self.cluster.store.catalog.set_partitions_loaded(rec.key, names, True)
        self._forget(rec)
        return status_ok()

    @rpc(None)
    async def ReleasePartitions(self, request: milvus_pb2.ReleasePartitionsRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        names = list(request.partition_names)
        await self._check_partitions(rec, names)
        await self._broadcast("ReleasePartitions", request)
        await self.cluster.store.catalog.set_partitions_loaded(rec.key, names, False)
        self._forget(rec)
        return status_ok()

    async def _first_node(self, method: str, request: Any) -> Any:
        """Ask the first live ring node (catalog reads that every node answers the same)."""
        last: ProxyError | None = None
        for client in self.cluster.ring_clients():
            if not self.cluster.is_live(client.id):
                continue
            try:
                return await client.call(method, request)
            except Unavailable as exc:
                last = exc
        raise last or Unavailable("no live node can answer")
