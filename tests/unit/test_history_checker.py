"""The history checker on hand-made histories, including ones that must fail (no servers)."""

from __future__ import annotations

from devkit.history import ABSENT, History, Op, check, possible


def op(i, kind, keys, values=(), t=(0, 1), outcome="ok", result=None, failed=()):  # type: ignore[no-untyped-def]
    return Op(i, "p", kind, list(keys), list(values), t[0], t[1], outcome, result, list(failed))


def test_sequential_writes_last_ack_wins() -> None:
    h = [op(0, "insert", [1, 2], ["a", "b"], (0, 1)), op(1, "upsert", [1], ["c"], (2, 3)),
         op(2, "delete", [2], (), (4, 5))]
    assert check(h, final={1: "c"}, final_count=1).ok
    assert [v.kind for v in check(h, final={1: "a"}).violations] == ["stale"]
    assert [v.kind for v in check(h, final={1: "c", 2: "b"}).violations] == ["resurrected"]
    assert [v.kind for v in check(h, final={}).violations] == ["lost"]
    assert [v.kind for v in check(h, final={1: "c"}, final_count=2).violations] == ["count"]


def test_concurrent_or_unknown_writes_allow_either_value() -> None:
    h = [op(0, "insert", [1], ["a"], (0, 1)), op(1, "upsert", [1], ["b"], (2, 5)), op(2, "upsert", [1], ["c"], (3, 4))]
    assert check(h, final={1: "b"}).ok and check(h, final={1: "c"}).ok
    assert not check(h, final={1: "a"}).ok  # both later upserts were acknowledged after it
    # a timed-out upsert may or may not have applied ...
    h2 = [op(0, "insert", [1], ["a"], (0, 1)), op(1, "upsert", [1], ["x"], (2, 3), outcome="info")]
    assert check(h2, final={1: "x"}).ok and check(h2, final={1: "a"}).ok
    # ... unless an acknowledged write started after it ended
    h3 = h2 + [op(2, "upsert", [1], ["z"], (4, 5))]
    assert not check(h3, final={1: "x"}).ok and check(h3, final={1: "z"}).ok


def test_partly_acknowledged_batch_only_refused_rows_are_uncertain() -> None:
    h = [op(0, "insert", [1, 2], ["a", "b"], (0, 1), failed=[2])]
    assert check(h, final={1: "a"}).ok and check(h, final={1: "a", 2: "b"}).ok
    assert [v.kind for v in check(h, final={2: "b"}).violations] == ["lost"]


def test_reads_during_the_run() -> None:
    w = [op(0, "insert", [1], ["a"], (0, 1)), op(1, "upsert", [1], ["b"], (5, 6))]
    assert check(w + [op(2, "get", [1], t=(2, 3), result={1: "a"})]).ok
    assert check(w + [op(2, "get", [1], t=(5.5, 7), result={1: "b"})]).ok  # overlaps the upsert
    bad = check(w + [op(2, "get", [1], t=(2, 3), result={})])
    assert [v.kind for v in bad.violations] == ["lost-read"]
    bad = check(w + [op(2, "get", [1], t=(7, 8), result={1: "a"})])
    assert [v.kind for v in bad.violations] == ["stale-read"]


def test_duplicates_in_search_and_query_are_caught() -> None:
    h = [op(0, "search", [], t=(0, 1), result=[[1, 2, 3], [4, 5]]), op(1, "query", [], t=(0, 1), result=[[7, 8]])]
    assert check(h).ok
    h.append(op(2, "search", [], t=(2, 3), result=[[1, 2, 1]]))
    r = check(h)
    assert [(v.kind, v.key, v.op) for v in r.violations] == [("duplicate", 1, 2)]


def test_count_bounds() -> None:
    h = [op(0, "insert", [1, 2, 3], ["a", "b", "c"], (0, 1)), op(1, "delete", [3], (), (4, 6)),
         op(2, "insert", [4], ["d"], (5, 6))]
    assert check(h + [op(3, "count", [], t=(2, 3), result=3)]).ok
    assert not check(h + [op(3, "count", [], t=(2, 3), result=4)]).ok  # double counted
    assert not check(h + [op(3, "count", [], t=(2, 3), result=2)]).ok  # lost
    # while a delete and an insert are in flight: 2..4
    for n, ok in ((2, True), (3, True), (4, True), (1, False), (5, False)):
        assert check(h + [op(3, "count", [], t=(4.5, 5.5), result=n)]).ok is ok, n


def test_possible_without_any_write_is_absent() -> None:
    assert possible([], 1, 0, 1) == {ABSENT}


def test_history_dump_and_load_replays_the_same_verdict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = History(clock=iter(range(100)).__next__)
    a = h.invoke("w", "insert", [1], ["a"])
    h.complete(a, "ok")
    g = h.invoke("r", "get", [1])
    h.complete(g, "ok", result={1: "a"})
    u = h.invoke("w", "upsert", [1], ["b"])  # never answered
    h.dump(str(tmp_path / "h.jsonl"))
    back = History.load(str(tmp_path / "h.jsonl"))
    assert [o.kind for o in back.ops] == ["insert", "get", "upsert"] and back.ops[2].outcome == "info"
    assert u.complete == float("inf")
    for final in ({1: "a"}, {1: "b"}):
        assert check(back, final=final).ok
    assert not check(back, final={}).ok
