"""Which nodes a catch-up replay reads a hinted key from (``handoff.plan_sources``), pure."""

from __future__ import annotations

from shardproxy.handoff import plan_sources
from shardproxy.hints import Hint, decode, encode


def hint(pk: int, standin: str = "", direct: bool = False) -> Hint:
    return Hint(pk=pk, standin=standin, raw=(str(pk).encode(), b"x"), direct=direct)


def up(*nodes: str):
    return lambda n: n in nodes


def test_live_replica_then_standin() -> None:
    src, blocked = plan_sources([hint(1, "s")], [["t", "r"]], "t", up("r"), up("r", "s"))
    assert src == [["r", "s"]] and blocked == []


def test_a_replica_behind_on_the_key_comes_after_the_standins() -> None:
    # r missed the key's last write too (its own hint names s2): s and s2 hold newer copies
    src, blocked = plan_sources([hint(1, "s")], [["t", "r"]], "t", up("r"), up("r", "s", "s2"), {"r": {1: hint(1, "s2")}})
    assert src == [["s", "s2", "r"]] and blocked == []


def test_a_direct_write_after_the_miss_makes_the_replica_current_again() -> None:
    # r's hint was superseded by a direct write of the key (touched): r first, its old stand-in
    # (a stale copy) is not a source. Found by the history checker: both replicas converged to
    # the stand-in's older copy and an acknowledged upsert was lost.
    src, _ = plan_sources([hint(1, "")], [["t", "r"]], "t", up("r"), up("r", "s2"), {"r": {1: hint(1, "s2", direct=True)}})
    assert src == [["r"]]


def test_down_but_answering_replica_without_hint_is_a_source() -> None:
    # both replicas were down at once: r answers (catching up) and no write of key 1 passed it by
    src, blocked = plan_sources([hint(1)], [["t", "r"]], "t", up(), up("r"), {"r": {}})
    assert src == [["r"]] and blocked == []


def test_unreachable_standin_blocks() -> None:
    _, blocked = plan_sources([hint(1, "s")], [["t", "r"]], "t", up("r"), up("r"))
    assert blocked == [0]


def test_no_source_while_a_replica_is_out_blocks() -> None:
    # r may hold the only copy: wait for it
    _, blocked = plan_sources([hint(1)], [["t", "r"]], "t", up(), up())
    assert blocked == [0]


def test_every_replica_missed_a_delete_settles_as_deleted() -> None:
    # r answers but is behind on the key with no stand-in either: a delete passed both by
    src, blocked = plan_sources([hint(1)], [["t", "r"]], "t", up(), up("r"), {"r": {1: hint(1)}})
    assert src == [[]] and blocked == []


def test_mutual_catch_up_reads_each_others_standins() -> None:
    # t and r both down and answering; each hint names a live stand-in: no deadlock
    hints = [hint(1, "s1"), hint(2, "")]
    src, blocked = plan_sources(hints, [["t", "r"], ["r", "t"]], "t", up("s1", "s2"), up("r", "s1", "s2"),
                                {"r": {1: hint(1, "s2"), 2: hint(2, "s2")}})
    assert src == [["s1", "s2"], ["s2"]] and blocked == []


def test_touched_value_marks_direct_and_keeps_in_flight_last() -> None:
    h = decode(b"7", b"s|123|ab12|d|p", False)
    assert h.direct and h.in_flight and h.standin == "s"
    assert not decode(b"7", encode("s", 5).encode(), False).direct
