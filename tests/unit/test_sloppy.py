"""Sloppy-quorum placement (placement.plan_write) and the copy tally (acks): pure logic."""

from __future__ import annotations

import numpy as np
import pytest

from shardproxy.placement import Placement
from shardproxy.ring import Ring, RingNode
from shardproxy.acks import acks_needed, outcome
from shardproxy.acks import copies as tally
from shardproxy.placement import place_row, plan_write
from shardproxy.placement import replica_lists as holders

RING3 = Ring([RingNode(f"node-{i}") for i in range(3)])
RING5 = Ring([RingNode(f"node-{i}") for i in range(5)])


def test_acks_needed() -> None:
    assert [acks_needed(a, 2, 3) for a in ("one", "quorum", "all")] == [1, 2, 2]
    assert [acks_needed(a, 3, 5) for a in ("one", "quorum", "all")] == [1, 2, 3]
    assert acks_needed("all", 3, 2) == 2  # never more than the ring has nodes
    with pytest.raises(ValueError, match="write_ack"):
        acks_needed("most", 2, 3)


def test_place_row_all_up_goes_to_replicas() -> None:
    targets, unplaced = place_row(["a", "b", "c", "d"], 2, set())
    assert targets == [("a", "a"), ("b", "b")] and unplaced == []


def test_place_row_stand_in_is_next_live_non_holder() -> None:
    targets, unplaced = place_row(["a", "b", "c", "d"], 2, {"a"})
    assert targets == [("c", "a"), ("b", "b")] and unplaced == []
    targets, _ = place_row(["a", "b", "c", "d"], 2, {"a", "c"})
    assert targets == [("d", "a"), ("b", "b")]
    # two replicas down: two distinct stand-ins
    targets, _ = place_row(["a", "b", "c", "d"], 2, {"a", "b"})
    assert targets == [("c", "a"), ("d", "b")]


def test_place_row_no_stand_in_left() -> None:
    targets, unplaced = place_row(["a", "b", "c"], 2, {"a", "c"})
    assert targets == [("b", "b")] and unplaced == ["a"]


def test_place_row_second_round_skips_taken() -> None:
    # b already acknowledged, c (a's stand-in) failed: the next stand-in is d, b is not resent
    targets, unplaced = place_row(["a", "b", "c", "d"], 2, {"a", "c"}, taken={"b"})
    assert targets == [("d", "a")] and unplaced == []


def test_plan_write_matches_ring_replicas_and_counts_stand_ins() -> None:
    pks = list(range(1, 2001))
    reps = [RING3.replicas(pk, 2) for pk in pks]
    assert holders(RING3, pks, 2) == reps
    plan = plan_write(RING3, pks, 2, unavailable={"node-1"})
    assert plan.sends == Placement.steady(RING3, 2).write_plan(pks, {"node-1"}).sends
    # every row gets two targets: its live replica and node-1's stand-in (the third node)
    counts = tally(len(pks), [plan.sends[n] for n in plan.sends])
    assert set(counts.tolist()) == {2}
    assert "node-1" not in plan.sends and not plan.unplaced
    for (replica, standin), rows in plan.hints.items():
        assert replica == "node-1"
        for i in rows:
            assert "node-1" in reps[i] and standin not in reps[i]
    hinted = sorted(i for rows in plan.hints.values() for i in rows)
    assert hinted == [i for i, r in enumerate(reps) if "node-1" in r]


def test_plan_write_two_of_three_down_cannot_place() -> None:
    pks = list(range(1, 500))
    plan = plan_write(RING3, pks, 2, unavailable={"node-0", "node-1"})
    counts = tally(len(pks), [plan.sends[n] for n in plan.sends])
    assert set(counts.tolist()) == {1}  # only node-2 is left
    ok, failed, landed = outcome(counts, acks_needed("quorum", 2, 3))
    assert ok == [] and failed == landed == list(range(len(pks)))
    ok, failed, landed = outcome(counts, acks_needed("one", 2, 3))
    assert failed == [] and len(ok) == len(pks)


def test_plan_write_five_nodes_stand_in_walks_past_down_nodes() -> None:
    pks = list(range(1, 1000))
    plan = plan_write(RING5, pks, 3, unavailable={"node-2", "node-4"})
    counts = tally(len(pks), [plan.sends[n] for n in plan.sends])
    assert set(counts.tolist()) == {3}
    for (replica, standin), rows in plan.hints.items():
        assert replica in {"node-2", "node-4"} and standin not in {"node-2", "node-4"}
        for i in rows:
            assert standin not in RING5.replicas(pks[i], 3)


def test_tally_and_outcome() -> None:
    counts = tally(4, [np.array([0, 1]), [1, 2], []])
    assert counts.tolist() == [1, 2, 1, 0]
    assert outcome(counts, 2) == ([1], [0, 2, 3], [0, 2])


def test_second_round_only_replaces_the_failed_copy() -> None:
    # a down: c stood in for it (acked); b (a replica) then fails: only b's copy is re-placed
    targets, unplaced = place_row(["a", "b", "c", "d", "e"], 2, {"a", "b"}, taken={"b", "c"}, served={"a"})
    assert targets == [("d", "b")] and unplaced == []


# -- the replicated write executor over the in-memory node double of test_scatter ---------------
def _fake(down: set[str] = frozenset(), slow: str | None = None):  # type: ignore[no-untyped-def]
    import asyncio
    from types import SimpleNamespace

    from tests.unit.test_scatter import FakeCluster

    cluster = FakeCluster(3)
    cluster.down = set(down)
    cluster.settings = cluster.settings.model_copy(update={"write_hedge_s": 0.2})
    cluster.rec = SimpleNamespace(name="c", db="default", key="c", replicas=2, loaded=True, write_ack="quorum", pk_name="id", pk_is_str=False)
    sent: dict[str, list[list[int]]] = {}
    for nid, node in cluster.nodes.items():
        async def write(method, collection, request, nid=nid):  # type: ignore[no-untyped-def]
            sent.setdefault(nid if method != "Delete" else f"delete:{nid}", []).append(
                list(request) if method != "Delete" else [request.expr])
            if nid == slow and method != "Delete":
                await asyncio.sleep(30)
            await asyncio.sleep(0.01)
            cluster.events.append(("landed" if method != "Delete" else "deleted", nid, "", tuple(request) if method != "Delete" else ()))
            return "ok"
        node.write = write  # type: ignore[method-assign]
    return cluster, sent


def _run_write(cluster, pks):  # type: ignore[no-untyped-def]
    import asyncio

    from shardproxy.scatter import Scatter

    return asyncio.run(Scatter(cluster).write_rows(cluster.rec, "Insert", lambda rows: rows.tolist(), pks))


def test_write_rows_one_node_down_all_acknowledged_with_stand_ins() -> None:
    pks = list(range(1, 301))
    cluster, sent = _fake(down={"n1"})
    res = _run_write(cluster, pks)
    assert res.failed_rows == [] and len(res.ok_rows) == len(pks) and res.needed == 2
    assert "n1" not in sent and not any(k.startswith("delete:") for k in sent)
    reps = holders(cluster.layout.target, pks, 2)
    assert sorted(cluster.hints["n1"]) == sorted(pk for pk, r in zip(pks, reps) if "n1" in r)
    copies_of = {i: sum(i in rows for parts in sent.values() for rows in parts) for i in range(len(pks))}
    assert set(copies_of.values()) == {2}


def test_write_rows_hung_replica_gets_a_stand_in_in_the_same_request() -> None:
    pks = list(range(1, 301))
    cluster, sent = _fake(slow="n2")
    res = _run_write(cluster, pks)
    assert res.failed_rows == [] and len(res.ok_rows) == len(pks)
    reps = holders(cluster.layout.target, pks, 2)
    assert sorted(cluster.hints["n2"]) == sorted(pk for pk, r in zip(pks, reps) if "n2" in r)
    assert any("did not answer" in r for r in res.reasons)


def test_write_rows_two_of_three_down_fail_and_undo_inserts() -> None:
    pks = list(range(1, 101))
    cluster, sent = _fake(down={"n0", "n1"})
    res = _run_write(cluster, pks)
    assert res.ok_rows == [] and res.failed_rows == list(range(len(pks)))
    assert res.landed_rows == []  # the copies on n2 were deleted again
    assert sent["delete:n2"] == [[f"id in [{','.join(map(str, pks))}]"]]


def test_delete_reaches_every_stand_in_copy_even_on_a_node_that_is_a_replica_of_other_keys() -> None:
    # Found by the history checker (seed 1, kill-node): with node-0 down, key 100 (replicas node-2,
    # node-0) had its stand-in copy on node-1; node-1 is a replica of other keys of the same delete
    # batch, so it got only those and the stand-in copy of 100 survived the acknowledged delete.
    placement = Placement.steady(RING3, 2)
    pks = list(range(100, 160))
    live = lambda n: n != "node-0"  # noqa: E731
    written = placement.write_plan(pks, {"node-0"})
    targets = placement.delete_targets(pks, live)
    for node, rows in written.sends.items():
        assert set(rows) <= set(targets[node]), node
    # the down replica still gets its keys (hinted), and without a node down the replicas suffice
    assert set(targets["node-0"]) == set(placement.holders(pks)["node-0"])
    assert Placement.steady(RING3, 1).delete_targets(pks, live) == Placement.steady(RING3, 1).holders(pks)


def test_write_rows_writes_its_hints_again_after_the_copies_landed() -> None:
    # Found with the R=2 kill-node test (acknowledged keys missing on the returning node after
    # catch-up): hints are written before the copies are sent, so a catch-up replay running
    # meanwhile read the sources before the copies landed, found nothing, deleted the key on the
    # returning node and removed the hint. Every hint must be written again after the last copy
    # of its key landed (then the replay's compare-and-delete fails or the hint is back).
    pks = list(range(1, 201))
    cluster, sent = _fake(down={"n1"})
    res = _run_write(cluster, pks)
    assert res.failed_rows == []
    ev = cluster.events
    last_landed = {}
    for t, (kind, node, _, rows) in enumerate(ev):
        if kind == "landed":
            for i in rows:
                last_landed[pks[i]] = t
    # written before the copies were sent: in flight (a replay must not judge the key yet) ...
    hinted = {k for kind, node, _, keys in ev if kind == "hint-in-flight" and node == "n1" for k in keys}
    assert hinted == set(cluster.hints["n1"]) and hinted
    first_landed = min(t for t, e in enumerate(ev) if e[0] == "landed")
    assert all(t < first_landed for t, e in enumerate(ev) if e[0] == "hint-in-flight")
    # ... and written again, done, after the last copy of the key landed
    for k in hinted:
        assert any(kind == "hint" and node == "n1" and k in keys and t > last_landed[k]
                   for t, (kind, node, standin, keys) in enumerate(ev)), k
    # the re-written hints keep their stand-in, and replicas written directly are touched
    standins = {(node, standin) for kind, node, standin, _ in ev if kind == "hint"}
    assert all(s for _, s in standins)
    touched = {node for kind, node, _, _ in ev if kind == "touch"}
    assert touched == {"n0", "n2"}


def test_a_stand_in_given_up_on_stays_named_in_the_hint_when_no_other_is_left() -> None:
    # Found by the SIGSTOP test (R = 2, three nodes, n1 frozen): the stand-in n2 was slow too and
    # given up on; with no stand-in left the hint was rewritten with none, so the copy n2 still
    # got was never removed by handoff (keys on all three nodes after catch-up).
    import asyncio

    pks = list(range(1, 101))
    cluster, sent = _fake(down={"n1"})
    for nid, node in cluster.nodes.items():
        async def write(method, collection, request, nid=nid):  # type: ignore[no-untyped-def]
            if nid == "n2" and method != "Delete":
                await asyncio.sleep(1.0)  # slower than write_hedge_s (0.2 s): given up, still lands
            cluster.events.append(("landed", nid, "", tuple(request) if method != "Delete" else ()))
            return "ok"
        node.write = write  # type: ignore[method-assign]
    reps = holders(cluster.layout.target, pks, 2)
    _run_write(cluster, pks)
    last = {}
    for kind, node, standin, keys in cluster.events:
        if kind.startswith("hint") and node == "n1":
            for k in keys:
                last[k] = standin
    mine = [pk for pk, r in zip(pks, reps) if "n1" in r and "n2" not in r]
    assert mine and all(last[k] == "n2" for k in mine), {k: last.get(k) for k in mine[:5]}
