"""Pure placement logic during moves and with replicas (no servers)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shardproxy import placement
from shardproxy.metastore import NodeRecord, NodeState
from shardproxy.ring import Ring, RingNode


def recs(**states: NodeState) -> list[NodeRecord]:
    return [NodeRecord(id=k.replace("_", "-"), address=f"h:{i + 1}", state=v) for i, (k, v) in enumerate(states.items())]


A = NodeState.ACTIVE


def test_rings_during_add_and_drain():
    nodes = recs(node_0=A, node_1=A, node_2=A, node_3=NodeState.JOINING)
    cur, tgt = placement.current_ring(nodes, 160), placement.target_ring(nodes, 160)
    assert cur.node_ids == ("node-0", "node-1", "node-2")
    assert tgt.node_ids == ("node-0", "node-1", "node-2", "node-3")
    assert placement.moving(nodes)
    nodes = recs(node_0=A, node_1=NodeState.DRAINING, node_2=A)
    cur, tgt = placement.current_ring(nodes, 160), placement.target_ring(nodes, 160)
    assert "node-1" in cur.node_ids and "node-1" not in tgt.node_ids
    assert not placement.moving(recs(node_0=A, node_1=NodeState.DOWN, node_2=NodeState.SPARE))
    # DOWN nodes keep their keys; spares own none
    assert placement.target_ring(recs(node_0=A, node_1=NodeState.DOWN, node_2=NodeState.SPARE), 160).node_ids == ("node-0", "node-1")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**62), min_size=1, max_size=200, unique=True))
def test_reads_reach_old_and_new_owner(pks):
    cur = Ring([RingNode(f"n{i}") for i in range(3)])
    tgt = Ring([RingNode(f"n{i}") for i in range(4)])
    split = placement.read_split(cur, tgt, pks)
    for i, pk in enumerate(pks):
        holders = {n for n, rows in split.items() if i in rows}
        assert holders == {cur.owner(pk), tgt.owner(pk)}
    changed = set(placement.changed_owner(cur, tgt, pks))
    assert changed == {pk for pk in pks if cur.owner(pk) != tgt.owner(pk)}


def test_only_keys_of_the_new_node_move():
    pks = list(range(20000))
    cur = Ring([RingNode(f"node-{i}") for i in range(3)])
    tgt = Ring([RingNode(f"node-{i}") for i in range(4)])
    for pk in placement.changed_owner(cur, tgt, pks):
        assert tgt.owner(pk) == "node-3"
    frac = placement.moved_fraction(cur, tgt, pks)
    assert 1 / 1.1 <= frac / 0.25 <= 1.1


def test_replicas_match_uhashring_and_cover_failures():
    ring = Ring([RingNode(f"node-{i}") for i in range(4)])
    pks = list(range(3000))
    idx = ring.replica_index(pks, 2)
    for i, pk in enumerate(pks):
        assert [ring.node_ids[j] for j in idx[i]] == ring.replicas(pk, 2)
    split = placement.replica_split(ring, pks, 2)
    assert sum(len(v) for v in split.values()) == 2 * len(pks)
    assert placement.missing_shards(ring, 2, ["node-1"]) == []
    assert placement.missing_shards(ring, 1, ["node-1"]) == ["node-1"]
    assert placement.missing_shards(ring, 2, ["node-1", "node-2"])  # some arcs have both replicas down
    assert placement.missing_shards(ring, 4, ["node-0", "node-1", "node-2"]) == []
    assert np.all(idx[:, 0] != idx[:, 1])
