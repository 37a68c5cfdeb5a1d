"""The ring simulation (bench/ringsim.py) against the real ring it simulates: exact arc-based
figures agree with sampled keys routed by ``Ring`` and with uhashring's own replica walk."""

from __future__ import annotations

import numpy as np
import pytest

from bench import ringsim
from shardproxy.ring import Ring, RingNode, ketama_hash


def _hashes(keys: list[int]) -> np.ndarray:
    return np.array([ketama_hash(str(k)) for k in keys], dtype=np.uint64)


def test_arc_shares_sum_to_one_and_match_sampled_keys() -> None:
    ring = ringsim.make_ring(5, 40)
    shares = ringsim.arc_shares(ring)
    assert shares.sum() == pytest.approx(1.0)
    keys = list(range(60_000))
    counts = np.bincount(ring.owner_index(keys), minlength=5) / len(keys)
    # 60k keys: binomial noise on a ~0.2 share is ~0.002
    assert np.abs(counts - shares).max() < 0.01


def test_imbalance_falls_with_vnodes_and_weights_are_respected() -> None:
    coarse = ringsim.imbalance(ringsim.make_ring(8, 4))
    fine = ringsim.imbalance(ringsim.make_ring(8, 320))
    assert fine >= 1.0 and coarse > fine
    weighted = ringsim.make_ring(6, 160, ringsim.alternating_weights(6))
    shares = ringsim.arc_shares(weighted)
    heavy, light = shares[1::2].mean(), shares[0::2].mean()
    assert heavy / light == pytest.approx(2.0, rel=0.15)


def test_moved_fraction_exact_matches_sampled_keys() -> None:
    before = ringsim.make_ring(4, 40)
    after = ringsim.make_ring(5, 40)
    exact = ringsim.moved_fraction_exact(before, after)
    keys = list(range(50_000))
    a = np.asarray(before.node_ids)[before.owner_index(keys)]
    b = np.asarray(after.node_ids)[after.owner_index(keys)]
    assert exact == pytest.approx(float(np.mean(a != b)), abs=0.01)
    # consistent hashing: adding a node moves only what the new node now owns
    assert exact == pytest.approx(ringsim.arc_shares(after)[after.node_ids.index("node-4")])
    assert ringsim.moved_fraction_exact(before, before) == 0.0


def test_make_ring_is_the_proxys_ring() -> None:
    ring = ringsim.make_ring(5, 16, [1, 2, 1, 3, 1])
    assert isinstance(ring, Ring) and ring.node_ids == tuple(f"node-{i}" for i in range(5))
    assert [n.weight for n in ring.nodes] == [1, 2, 1, 3, 1]


def test_successor_table_is_uhashrings_distinct_walk() -> None:
    ring = ringsim.make_ring(6, 10)
    keys = list(range(300))
    got = ringsim.replica_index_of(ring, _hashes(keys), 3)
    for k, row in zip(keys, got):
        assert [ring.node_ids[i] for i in row] == ring.replicas(k, 3)


def test_replica_stats_distinct_and_count_capped() -> None:
    ring = ringsim.make_ring(3, 20)
    st = ringsim.replica_stats(ring, 2)
    assert st.distinct_ok and st.replicas == 2 and st.load_max_over_mean >= 1.0
    assert ringsim.replica_stats(ring, 5).replicas == 3  # never more replicas than nodes


def test_simulate_point_and_choose_vnodes() -> None:
    pts = [ringsim.simulate_point(n, v) for n in (3, 8) for v in (2, 160)]
    for p in pts:
        assert 0 < p.add_moved < 1 and 0 < p.remove_moved < 1
        assert p.replica_distinct
    # removing a node moves exactly its own share
    ring = ringsim.make_ring(8, 160)
    p = next(p for p in pts if p.nodes == 8 and p.vnodes == 160)
    assert p.remove_moved == pytest.approx(ringsim.arc_shares(ring)[ring.node_ids.index("node-4")])
    assert ringsim.choose_vnodes(pts, max_imbalance=1.3) == 160
    assert ringsim.choose_vnodes(pts, max_imbalance=1.0) is None
    assert ringsim.choose_vnodes(pts, max_imbalance=1.3, max_nodes=2) is None  # no point that small


def test_lookup_cost_reports_time_and_memory() -> None:
    cost = ringsim.lookup_cost(ringsim.make_ring(4, 8), batch=2000, repeats=1)
    assert cost.seconds_per_batch > 0 and cost.peak_bytes_per_batch > 0
    assert cost.ring_points == len(ringsim.make_ring(4, 8)._points)


def test_make_ring_rejects_wrong_weight_count() -> None:
    with pytest.raises(ValueError, match="weights"):
        ringsim.make_ring(3, 10, [1, 2])
    assert ringsim.build_seconds(3, 4) > 0 and RingNode("x").weight == 1
