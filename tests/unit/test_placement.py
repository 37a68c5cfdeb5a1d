"""Placement: write targets, holders, tombstone keys, missing shards; with and without a move
and replicas (no servers)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shardproxy.metastore import NodeRecord, NodeState
from shardproxy.placement import Placement
from shardproxy.ring import Ring, RingNode

A = NodeState.ACTIVE
keys = st.lists(st.one_of(st.integers(min_value=0, max_value=2**62), st.text(min_size=1, max_size=12)),
                min_size=1, max_size=120, unique=True)


def ring(n: int) -> Ring:
    return Ring([RingNode(f"n{i}") for i in range(n)])


def rows_of(parts: dict, i: int) -> set[str]:
    return {n for n, rows in parts.items() if i in list(rows)}


def adding() -> Placement:
    return Placement(current=ring(3), target=ring(4), moving=True)


def test_from_nodes_during_a_join_and_a_drain() -> None:
    nodes = [NodeRecord(f"n{i}", f"h:{i}", state=A) for i in range(3)] + [NodeRecord("n3", "h:3", state=NodeState.JOINING)]
    p = Placement.from_nodes(nodes, 160, replicas=2)
    assert p.moving and p.replicas == 2
    assert p.current.node_ids == ("n0", "n1", "n2") and p.target.node_ids == ("n0", "n1", "n2", "n3")
    assert p.scatter_set() == ["n0", "n1", "n2", "n3"]
    nodes = [NodeRecord("n0", "h:0"), NodeRecord("n1", "h:1", state=NodeState.DRAINING),
             NodeRecord("n2", "h:2", state=NodeState.DOWN), NodeRecord("n3", "h:3", state=NodeState.SPARE)]
    p = Placement.from_nodes(nodes, 160)
    assert p.moving and "n1" in p.current.node_ids and "n1" not in p.target.node_ids
    assert p.scatter_set() == ["n0", "n1", "n2"]  # spares hold nothing, down nodes keep their keys


@settings(max_examples=40, deadline=None)
@given(keys, st.integers(min_value=1, max_value=4))
def test_write_targets_are_the_r_replicas_on_the_target_ring(pks: list, r: int) -> None:
    p = Placement.steady(ring(4), replicas=r).with_replicas(r)
    parts = p.write_targets(pks)
    for i, pk in enumerate(pks):
        assert rows_of(parts, i) == set(p.target.replicas(pk, r))
    # during a move writes still go to the target only
    moving = Placement(ring(3), ring(4), True, r)
    parts = moving.write_targets(pks)
    for i, pk in enumerate(pks):
        assert rows_of(parts, i) == set(ring(4).replicas(pk, r))


@settings(max_examples=40, deadline=None)
@given(keys, st.integers(min_value=1, max_value=3), st.booleans())
def test_holders_cover_target_replicas_and_current_owners_during_a_move(pks: list, r: int, move: bool) -> None:
    cur, tgt = ring(3), ring(4)
    p = Placement(cur, tgt if move else cur, move, r)
    holders = p.holders(pks)
    for i, pk in enumerate(pks):
        want = set(p.target.replicas(pk, r))
        if move:
            want |= set(cur.replicas(pk, r))
        assert rows_of(holders, i) == want


def test_holders_without_replicas_or_move_is_the_owner() -> None:
    pks = list(range(500))
    p = Placement.steady(ring(3))
    holders = p.holders(pks)
    assert sum(len(v) for v in holders.values()) == len(pks)
    for i, pk in enumerate(pks):
        assert rows_of(holders, i) == {p.target.owner(pk)}
    assert p.holders([]) == {}


def test_tombstone_keys() -> None:
    pks = list(range(3000))
    assert Placement.steady(ring(3), replicas=2).tombstone_keys(pks) == []  # no move, no tombstones
    p = adding()
    changed = p.tombstone_keys(pks)
    assert changed and len(changed) < len(pks)
    assert set(changed) == {pk for pk in pks if ring(3).owner(pk) != ring(4).owner(pk)}
    assert all(ring(4).owner(pk) == "n3" for pk in changed)  # only keys of the new node move
    assert p.with_replicas(2).tombstone_keys(pks) == pks  # replicated: every key


def test_missing_shards() -> None:
    p = Placement.steady(ring(4), replicas=2)
    assert p.missing_shards([]) == []
    assert p.missing_shards(["n1"]) == []  # a replica covers every shard
    assert p.with_replicas(1).missing_shards(["n1"]) == ["n1"]
    assert p.missing_shards(["n1", "n2"])  # some arcs have both replicas down
    assert p.with_replicas(4).missing_shards(["n0", "n1", "n2"]) == []
    assert p.missing_shards(["ghost"]) == ["ghost"]  # a down node on neither ring: its rows have no other copy
    # during a move the current ring counts too: n3 is only on the target ring
    m = adding()
    assert m.missing_shards(["n3"]) == ["n3"]
    assert m.with_replicas(2).missing_shards(["n3"]) == []


def test_ring_replica_api_matches_uhashring() -> None:
    r = ring(4)
    pks = list(range(2000))
    idx = r.replica_index(pks, 3)
    assert idx.shape == (2000, 3)
    for i, pk in enumerate(pks):
        assert [r.node_ids[j] for j in idx[i]] == r.replicas(pk, 3)
    assert np.array_equal(idx[:, 0], r.owner_index(pks))
    assert r.successors(9).shape[1] == 4  # at most every node
    assert r.index_of("n2") == 2 and r.index_of("nope") is None
