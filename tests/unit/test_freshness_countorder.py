"""Which copy a read returns during a move, and the order count(*) reads nodes (no servers)."""

from __future__ import annotations

from pymilvus.grpc_gen import schema_pb2

from shardproxy import fielddata
from shardproxy.countorder import count_phases
from shardproxy.freshness import prefer_target_copies
from shardproxy.metastore import NodeRecord, NodeState
from shardproxy.placement import Placement
from shardproxy.ring import Ring, RingNode


def ring(*ids: str) -> Ring:
    return Ring([RingNode(i) for i in ids])


def cols(pks: list[int], vals: list[str]) -> list[schema_pb2.FieldData]:
    pk = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="id")
    pk.scalars.long_data.data.extend(pks)
    v = schema_pb2.FieldData(type=schema_pb2.DataType.VarChar, field_name="val")
    v.scalars.string_data.data.extend(vals)
    return [pk, v]


def as_dict(fields: list[schema_pb2.FieldData]) -> dict[int, str]:
    return dict(zip(fielddata.column_values(fields[0]), fielddata.column_values(fields[1])))


def test_target_replica_copy_wins_over_a_lingering_old_copy() -> None:
    cur, tgt = ring("a", "b", "c"), ring("a", "b", "c", "d")
    p = Placement(current=cur, target=tgt, moving=True, replicas=2)
    keys = list(range(200))
    t_sets = {k: set(tgt.replicas(k, 2)) for k in keys}
    c_sets = {k: set(cur.replicas(k, 2)) for k in keys}
    k = next(k for k in keys if c_sets[k] - t_sets[k])  # a key that leaves one old replica
    old = next(iter(c_sets[k] - t_sets[k]))
    new = next(iter(t_sets[k]))
    per_node = {old: cols([k], ["stale"]), new: cols([k], ["fresh"])}
    out = prefer_target_copies(p, per_node, "id")
    assert as_dict(out[old]) == {} and as_dict(out[new]) == {k: "fresh"}
    # not yet on any target replica: the old copy is the only one and stays
    assert as_dict(prefer_target_copies(p, {old: cols([k], ["only"])}, "id")[old]) == {k: "only"}
    # no move: untouched
    steady = Placement.steady(cur, replicas=2)
    assert as_dict(prefer_target_copies(steady, per_node, "id")[old]) == {k: "stale"}


def test_count_reads_givers_before_receivers() -> None:
    nodes = [NodeRecord("a", "h:1"), NodeRecord("b", "h:2"), NodeRecord("d", "h:4", state=NodeState.JOINING)]
    assert count_phases(nodes, ["a", "b", "d"]) == [["a", "b"], ["d"]]
    nodes[2] = NodeRecord("d", "h:4", state=NodeState.DRAINING)
    assert count_phases(nodes, ["a", "b", "d"]) == [["d"], ["a", "b"]]
    nodes[2] = NodeRecord("d", "h:4")
    assert count_phases(nodes, ["a", "b", "d"]) == [["a", "b", "d"]]
