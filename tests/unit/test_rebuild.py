"""The rebuild plan of a returning node (shardproxy/rebuild.py): which keys are copied to it from
which peer, and which are deleted on it, given pk -> digest maps. Pure, no servers."""

from __future__ import annotations

from collections.abc import Sequence

from shardproxy.rebuild import plan
from shardproxy.ring import Ring, RingNode

REPLICAS = {1: ["n1", "n0"], 2: ["n1", "n2"], 3: ["n0", "n2"], 4: ["n2", "n1"], 5: ["n1", "n0"], 6: ["n0", "n1"],
            7: ["n1", "n2"], 8: ["n2", "n0"]}


def replicas_of(keys: Sequence[int]) -> list[list[str]]:
    return [REPLICAS[k] for k in keys]


def test_plan_copies_missing_and_differing_rows_and_deletes_rows_no_peer_holds() -> None:
    mine = {1: "a", 2: "old", 5: "gone", 3: "standin-copy", 6: "x"}
    peers = {"n0": {1: "a", 3: "c", 6: "x", 8: "h"}, "n2": {2: "new", 3: "c", 4: "d", 8: "h"}}
    p = plan("n1", mine, peers, replicas_of)
    # 1: same digest on n0: nothing; 2: differs: from n2; 4: missing: from n2; 6: same on n0
    assert p.copies == {"n2": [2, 4]}
    assert p.reconverge == 1
    # 5: n1 and n0 are its replicas, n0 lacks it: deleted while n1 was down (or a stray)
    # 3: n1 is not a replica of it (a stand-in copy for another node's hint): left alone
    # 8: not n1's key range: left alone
    assert p.deletes == [5]


def test_plan_copies_from_the_first_holding_peer_and_skips_replayed_keys() -> None:
    reps = {k: ["n1", "n0", "n2"] for k in range(1, 6)}
    peers = {"n0": {1: "a", 3: "c"}, "n2": {1: "b", 2: "b", 3: "c2"}}
    mine = {3: "c2", 4: "d", 5: "e"}
    p = plan("n1", mine, peers, lambda keys: [reps[k] for k in keys], skip={5})
    # 1: first holder in replica order (n0); 2: only n2 holds it; 3: matches one peer (n2): kept
    assert p.copies == {"n0": [1], "n2": [2]}
    assert p.reconverge == 0
    # 4: no peer holds it: deleted; 5: its hint was just replayed (the newest copy may be one
    # only a stand-in held): the rebuild leaves it to the replay
    assert p.deletes == [4]


def test_plan_over_a_real_ring_rebuilds_exactly_the_nodes_ranges() -> None:
    ring = Ring([RingNode(f"n{i}") for i in range(3)])
    keys = list(range(1, 400))
    reps = {k: ring.replicas(k, 2) for k in keys}
    full = {n: {k: f"v{k}" for k in keys if n in reps[k]} for n in ("n0", "n1", "n2")}
    deleted = {k for k in keys if k % 7 == 0}  # deleted on the peers while n1 was down
    upserted = {k for k in keys if k % 5 == 0} - deleted
    inserted = set(range(400, 460))
    reps.update({k: ring.replicas(k, 2) for k in inserted})
    peers = {n: {k: ("new" if k in upserted else v) for k, v in full[n].items() if k not in deleted} for n in ("n0", "n2")}
    for k in inserted:
        for n in reps[k]:
            if n != "n1":
                peers[n][k] = "ins"
    p = plan("n1", full["n1"], peers, lambda ks: [reps[k] for k in ks])
    copied = {k for ks in p.copies.values() for k in ks}
    assert copied == {k for k in upserted | inserted if "n1" in reps[k]}
    assert set(p.deletes) == {k for k in deleted if "n1" in reps[k]}
    assert p.reconverge == len({k for k in upserted if "n1" in reps[k]})
    assert all(src in reps[k] and src != "n1" for src, ks in p.copies.items() for k in ks)
