"""Ring: the continuum and every lookup agree with uhashring (the library whose placement existing
data follows), balance, minimal movement, weights."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uhashring import HashRing

from shardproxy.ring import Ring, RingNode, ketama_continuum, ring_from_weights, successor_table


def _uhashring(ring: Ring) -> HashRing:
    """uhashring's own ring over the same nodes (the oracle: today's placement)."""
    conf = {n.node_id: {"weight": max(1, int(n.weight)), "vnodes": ring.vnodes} for n in ring.nodes}
    return HashRing(nodes=conf, hash_fn="ketama")


def _uhashring_replicas(hr: HashRing, key: str, count: int) -> list[str]:
    out: list[str] = []
    for name in hr.iterate_nodes(key, distinct=True):
        out.append(str(name))
        if len(out) == count:
            break
    return out


def _assert_same_as_uhashring(ring: Ring, keys: list, replica_keys: int = 200) -> None:
    hr = _uhashring(ring)
    assert np.array_equal(ring._points, np.asarray(hr.runtime._keys, dtype=np.uint64))
    assert [ring.node_ids[i] for i in ring._point_owner] == [hr.runtime._ring[k] for k in hr.runtime._keys]
    assert ring.owners(keys) == [hr.get_node(str(k)) for k in keys]
    for k in keys[:replica_keys]:
        assert ring.replicas(k, 3) == _uhashring_replicas(hr, str(k), min(3, len(ring)))


@pytest.mark.parametrize("n,vnodes,weighted", [(1, 160, False), (3, 160, False), (8, 160, True), (33, 160, True),
                                               (64, 160, False), (200, 10, True)])
def test_continuum_and_placement_equal_uhashring(n: int, vnodes: int, weighted: bool) -> None:
    nodes = [RingNode(f"node-{i}", (i % 3) + 1 if weighted else 1) for i in range(n)]
    keys = list(range(3000)) + [f"sku-{i}" for i in range(1000)] + [-(2**63), 2**63 - 1, ""]
    _assert_same_as_uhashring(Ring(nodes, vnodes=vnodes), keys)


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(min_value=-1, max_value=5), min_size=1, max_size=9),
       st.integers(min_value=1, max_value=60),
       st.lists(st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=20)), max_size=60))
@settings(max_examples=60, deadline=None)
def test_placement_equals_uhashring_property(weights: dict[str, int], vnodes: int, keys: list) -> None:
    _assert_same_as_uhashring(ring_from_weights(weights, vnodes=vnodes), keys, replica_keys=20)


def test_hash_collision_goes_to_the_last_node_written_like_uhashring() -> None:
    # md5("p2182-0") and md5("p13086-0") share their first 32-bit word (found by a birthday search):
    # uhashring writes nodes in name order, so "p2182" (written after "p13086") owns both copies.
    ring = ring_from_weights({"p2182": 1, "p13086": 1}, vnodes=1)
    pts = ring._points.tolist()
    assert len(pts) == 8 and len(set(pts)) == 7
    dup = next(p for p in pts if pts.count(p) == 2)
    assert {ring.node_ids[o] for p, o in zip(pts, ring._point_owner) if p == dup} == {"p2182"}
    _assert_same_as_uhashring(ring, list(range(2000)))


def test_continuum_is_linear_in_points() -> None:
    # 512 nodes x 160 vnodes: 327,680 points, one per (node, vnode, word); sorted, every node present
    points, owner = ketama_continuum([RingNode(f"node-{i}") for i in range(512)], 160)
    assert len(points) == len(owner) == 512 * 160 * 4
    assert bool((np.diff(points.astype(np.int64)) >= 0).all())
    counts = np.bincount(owner, minlength=512)  # 640 each, less the odd 32-bit collision lost to a later node
    assert counts.sum() == len(points) and counts.min() >= 630 and counts.max() <= 650


def test_successor_table_small_cases() -> None:
    assert successor_table(np.array([0, 0, 1, 0], dtype=np.int32), 2).tolist() == [[0, 1], [0, 1], [1, 0], [0, 1]]
    assert successor_table(np.array([2, 2, 2], dtype=np.int32), 3).tolist() == [[2], [2], [2]]
    assert successor_table(np.zeros(0, dtype=np.int32), 2).shape == (0, 0)


def test_batch_owners_agree_with_uhashring() -> None:
    ring = ring_from_weights({"a": 1, "b": 2, "c": 1})
    keys = list(range(5000)) + [f"sku-{i}" for i in range(2000)]
    assert ring.owners(keys) == [ring.owner(k) for k in keys]


@given(st.lists(st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=30)), max_size=200))
@settings(max_examples=50, deadline=None)
def test_batch_owners_agree_property(keys: list) -> None:
    ring = ring_from_weights({"n1": 1, "n2": 1, "n3": 3})
    assert ring.owners(keys) == [ring.owner(k) for k in keys]


def test_balance_three_nodes_within_issue_bounds() -> None:
    ring = ring_from_weights({"node-0": 1, "node-1": 1, "node-2": 1})
    counts = Counter(ring.owners(list(range(30_000))))
    for node, n in counts.items():
        assert 0.25 <= n / 30_000 <= 0.42, (node, n)


def test_weights_shift_share() -> None:
    ring = ring_from_weights({"small": 1, "big": 3})
    counts = Counter(ring.owners(list(range(20_000))))
    assert 0.65 <= counts["big"] / 20_000 <= 0.85


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_adding_a_node_moves_about_one_over_n_plus_one(n: int) -> None:
    keys = list(range(40_000))
    before = ring_from_weights({f"n{i}": 1 for i in range(n)})
    after = ring_from_weights({f"n{i}": 1 for i in range(n + 1)})
    a, b = before.owners(keys), after.owners(keys)
    moved = [(x, y) for x, y in zip(a, b) if x != y]
    # only keys moving *to* the new node
    assert all(y == f"n{n}" for _, y in moved)
    ideal = 1 / (n + 1)
    assert 0.6 * ideal <= len(moved) / len(keys) <= 1.4 * ideal


def test_split_partitions_rows_by_owner() -> None:
    ring = ring_from_weights({"a": 1, "b": 1, "c": 1})
    keys = [7, 1, 99, 3, 42, 5, 1000]
    parts = ring.split(keys)
    rows = sorted(int(r) for idx in parts.values() for r in idx)
    assert rows == list(range(len(keys)))
    for node, idx in parts.items():
        assert all(ring.owner(keys[int(i)]) == node for i in idx)
        assert list(idx) == sorted(idx)  # original order kept inside a part


def test_replicas_are_distinct_successors() -> None:
    ring = ring_from_weights({"a": 1, "b": 1, "c": 1, "d": 1})
    for k in range(200):
        reps = ring.replicas(k, 3)
        assert len(set(reps)) == 3
        assert reps[0] == ring.owner(k)


def test_empty_ring_raises() -> None:
    ring = Ring([])
    assert not ring
    with pytest.raises(LookupError):
        ring.owners([1])
    assert ring.split([]) == {}


def test_node_order_does_not_matter() -> None:
    r1 = Ring([RingNode("a"), RingNode("b"), RingNode("c")])
    r2 = Ring([RingNode("c"), RingNode("a"), RingNode("b")])
    keys = np.arange(3000).tolist()
    assert r1.owners(keys) == r2.owners(keys)
