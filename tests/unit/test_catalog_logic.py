"""Pure pieces of the catalog surface: effective database, request -> RPC name, property
alters, the worst compaction / index state, which partition a request names that does not exist."""

from __future__ import annotations

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy.handlers.alter import apply_properties, worst_compaction_state
from shardproxy.handlers.ddl import worst_index_state
from shardproxy.handlers.partitions import missing_partition
from shardproxy.metastore import CollectionRecord
from shardproxy.resolve import effective_db, method_of

CS, IS = common_pb2.CompactionState, common_pb2.IndexState


def test_effective_db_request_then_header_then_default() -> None:
    req = milvus_pb2.QueryRequest(collection_name="c")
    assert effective_db(req, ()) == "default"
    assert effective_db(req, (("dbname", "tenant"),)) == "tenant"
    req.db_name = "explicit"
    assert effective_db(req, (("dbname", "tenant"),)) == "explicit"
    assert effective_db(milvus_pb2.QueryRequest(), (("dbname", ""),)) == "default"


def test_method_of() -> None:
    assert method_of(milvus_pb2.DescribeCollectionRequest()) == "DescribeCollection"
    assert method_of(milvus_pb2.GetPartitionStatisticsRequest()) == "GetPartitionStatistics"


def test_apply_properties() -> None:
    assert apply_properties({"a": "1", "b": "2"}, {"b": "3", "c": "4"}, ["a"]) == {"b": "3", "c": "4"}


def test_worst_states() -> None:
    assert worst_compaction_state([CS.Completed, CS.Executing]) == CS.Executing
    assert worst_compaction_state([CS.Completed, CS.Completed]) == CS.Completed
    assert worst_compaction_state([]) == CS.Completed
    assert worst_index_state([IS.Finished, IS.InProgress, IS.Finished]) == IS.InProgress
    assert worst_index_state([IS.Finished, IS.Failed]) == IS.Failed


def _rec(partition_key: bool = False, partitions: list[str] | None = None) -> CollectionRecord:
    schema = schema_pb2.CollectionSchema(name="c")
    schema.fields.add(name="id", data_type=schema_pb2.DataType.Int64, is_primary_key=True)
    schema.fields.add(name="t", data_type=schema_pb2.DataType.VarChar, is_partition_key=partition_key)
    create = milvus_pb2.CreateCollectionRequest(collection_name="c", schema=schema.SerializeToString())
    return CollectionRecord(name="c", create=create, partitions=partitions or [])


def test_missing_partition() -> None:
    rec = _rec(partitions=["p1"])
    assert missing_partition(rec, ["", "_default", "p1"]) is None
    assert missing_partition(rec, ["p1", "p2", "p3"]) == "p2"
    assert missing_partition(_rec(partition_key=True), ["anything"]) is None  # the nodes decide
