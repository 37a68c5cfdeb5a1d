"""Verify's comparison logic and repair planning on hand-made node streams (no servers)."""

from __future__ import annotations

from shardproxy.placement import Placement
from shardproxy.repair import plan
from shardproxy.ring import Ring, RingNode
from shardproxy.verify import (CollectionReport, choose_version, compare_window, horizon, replica_sets,
                               split_window)


def ring(*ids: str) -> Ring:
    return Ring([RingNode(i) for i in ids])


R3 = ring("n0", "n1", "n2")
PKS = list(range(1, 61))


def placed(p: Placement, pks=PKS, digest=lambda pk: f"d{pk}") -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Every node's stream when each key is exactly on its target replicas."""
    out: dict[str, list] = {n: [] for n in set(p.current.node_ids) | set(p.target.node_ids)}
    for pk, (tgt, _) in zip(pks, replica_sets(p, pks)):
        for n in tgt:
            out[n].append((pk, digest(pk)))
    return out


def run(p: Placement, streams: dict[str, list], unreachable=()) -> CollectionReport:  # type: ignore[no-untyped-def]
    rep = CollectionReport("c", moving=p.moving)
    compare_window(rep, {n: sorted(v) for n, v in streams.items()}, p, unreachable)
    return rep


def test_clean_cluster_counts_each_key_once_r1_and_r2() -> None:
    for r in (1, 2, 3):
        p = Placement.steady(R3, replicas=r)
        rep = run(p, placed(p))
        assert rep.clean, rep.findings[:3]
        assert rep.rows == len(PKS)
        assert sum(t.rows for t in rep.nodes.values()) == len(PKS) * r


def test_missing_stray_differs_duplicate_are_found_on_the_right_node() -> None:
    p = Placement.steady(R3, replicas=2)
    s = placed(p)
    tgt = dict(zip(PKS, (t for t, _ in replica_sets(p, PKS))))
    # key 5 lost on its second replica
    s[tgt[5][1]].remove((5, "d5"))
    # key 7: a stray copy on the one node that is not a replica
    other = next(n for n in R3.node_ids if n not in tgt[7])
    s[other].append((7, "d7"))
    # key 9: the second replica holds an older version
    s[tgt[9][1]] = [(k, "old" if k == 9 else d) for k, d in s[tgt[9][1]]]
    # key 11 returned twice by its owner
    s[tgt[11][0]].append((11, "d11"))
    rep = run(p, s)
    got = {(f.kind, f.node, f.pk, f.source) for f in rep.findings}
    assert got == {("missing", tgt[5][1], 5, tgt[5][0]), ("stray", other, 7, tgt[7][0]),
                   ("differs", tgt[9][1], 9, tgt[9][0]), ("duplicate", tgt[11][0], 11, tgt[11][0])}
    assert rep.rows == len(PKS) and not rep.clean
    assert rep.nodes[tgt[5][1]].missing == 1 and rep.counts()["differs"] == 1


def test_key_on_no_owner_is_missing_with_the_stray_as_source() -> None:
    p = Placement.steady(R3)
    s = placed(p)
    owner = R3.owners([3])[0]
    other = next(n for n in R3.node_ids if n != owner)
    s[owner].remove((3, "d3"))
    s[other].append((3, "d3"))
    rep = run(p, s)
    assert {(f.kind, f.node, f.source) for f in rep.findings if f.pk == 3} == {
        ("missing", owner, other), ("stray", other, "")}
    pl = plan(rep.findings)
    assert pl.copies == {(other, owner): [3]} and pl.strays == {other: [3]}


def test_during_a_move_a_key_on_either_ring_or_both_is_fine_and_a_half_copy_is_not() -> None:
    cur, tgt = R3, ring("n0", "n1", "n2", "n3")
    p = Placement(current=cur, target=tgt, moving=True, replicas=1)
    before = placed(Placement.steady(cur), PKS)
    after = placed(Placement.steady(tgt), PKS)
    moved = [pk for pk in PKS if cur.owners([pk]) != tgt.owners([pk])]
    assert moved
    # not yet moved, moved, and in flight (on both): all clean
    for streams in (before, after, {n: sorted(set(before.get(n, [])) | set(after.get(n, []))) for n in tgt.node_ids}):
        streams.setdefault("n3", [])
        rep = run(p, streams)
        assert rep.clean and rep.rows == len(PKS), rep.findings[:3]
    # the same "after" layout seen with the old placement: the moved keys are strays + missing
    rep = run(Placement.steady(cur), {**after})
    assert rep.counts()["stray"] == len(moved) and rep.counts()["missing"] == len(moved)


def test_unreachable_owner_is_not_reported_missing_but_the_report_is_not_clean() -> None:
    p = Placement.steady(R3)
    s = placed(p)
    s.pop("n1")
    rep = run(p, s, unreachable=["n1"])
    assert not rep.findings
    rep.unreachable.append("n1")
    assert not rep.clean


def test_choose_version_majority_then_primary() -> None:
    assert choose_version({"a": "x", "b": "y", "c": "y"}, ["a", "b", "c"]) == "y"
    assert choose_version({"a": "x", "b": "y"}, ["b", "a"]) == "y"
    assert choose_version({"a": "x", "b": "y"}, ["a", "b"]) == "x"


def test_windows_follow_the_slowest_stream() -> None:
    assert horizon({"a": 10, "b": 4, "c": None}, exhausted={"c"}) == 4
    assert horizon({"a": 10, "b": 4}, exhausted={"a", "b"}) is None
    assert split_window([(1, "x"), (4, "y"), (9, "z")], 4) == ([(1, "x"), (4, "y")], [(9, "z")])
    assert split_window([(1, "x")], None) == ([(1, "x")], [])


def test_windowed_compare_equals_whole_compare() -> None:
    p = Placement.steady(R3, replicas=2)
    s = placed(p)
    s["n0"] = s["n0"][:-3]  # some missing
    whole = run(p, s)
    rep = CollectionReport("c")
    bufs = {n: sorted(v) for n, v in s.items()}
    for upto in (10, 25, 40, None):
        win = {}
        for n in bufs:
            win[n], bufs[n] = split_window(bufs[n], upto)
        compare_window(rep, win, p)
    assert sorted(map(str, rep.findings)) == sorted(map(str, whole.findings)) and rep.rows == whole.rows


def test_plan_filters_by_node_and_skips_duplicates() -> None:
    p = Placement.steady(R3, replicas=2)
    s = placed(p)
    tgt = dict(zip(PKS, (t for t, _ in replica_sets(p, PKS))))
    s[tgt[5][1]].remove((5, "d5"))
    s[tgt[6][0]].append((6, "d6"))
    rep = run(p, s)
    full = plan(rep.findings)
    assert full.copies == {(tgt[5][0], tgt[5][1]): [5]} and len(full.skipped) == 1
    only = plan(rep.findings, node="nope")
    assert only.empty


def test_stand_in_copies_and_replicas_awaiting_handoff_are_hinted_not_strays() -> None:
    # issue 11: with a replica down, verify reported the stand-in copies as strays
    p = Placement.steady(R3, 2)
    streams = placed(p)
    pk = PKS[0]
    tgt, _ = replica_sets(p, [pk])[0]
    other = next(n for n in R3.node_ids if n not in tgt)
    streams[tgt[1]] = [e for e in streams[tgt[1]] if e[0] != pk]  # the replica lacks it ...
    streams[other].append((pk, f"d{pk}"))  # ... and a stand-in holds it
    rep = run(p, streams)
    assert {(f.kind, f.node) for f in rep.findings if f.pk == pk} == {("stray", other), ("missing", tgt[1])}
    rep = CollectionReport("c")
    compare_window(rep, {n: sorted(v) for n, v in streams.items()}, p, (), hints={pk: {tgt[1]: other}})
    assert rep.findings == [] and rep.clean
    assert {(f.kind, f.node) for f in rep.hinted} == {("hinted", other), ("hinted", tgt[1])}
    assert rep.nodes[other].hinted == 1 and rep.to_dict()["hinted"] == 2
    # a copy on a node no hint names is still a stray
    rep = CollectionReport("c")
    compare_window(rep, {n: sorted(v) for n, v in streams.items()}, p, (), hints={pk: {tgt[1]: ""}})
    assert {(f.kind, f.node) for f in rep.findings} == {("stray", other)}
