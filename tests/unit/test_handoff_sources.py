"""Which nodes a catch-up replay reads a hinted key from (``handoff.plan_sources``), pure."""

from __future__ import annotations

from shardproxy.handoff import plan_sources
from shardproxy.hints import Hint


def hint(pk: int, standin: str = "") -> Hint:
    return Hint(pk=pk, standin=standin, raw=(str(pk).encode(), b"x"))


def up(*nodes: str):
    return lambda n: n in nodes


def test_live_replica_then_standin() -> None:
    src, blocked = plan_sources([hint(1, "s")], [["t", "r"]], "t", up("r", "s"))
    assert src == [["r", "s"]] and blocked == []


def test_a_replica_hinted_for_the_key_is_not_a_source_its_standin_is() -> None:
    # r missed the key's last write too (its own hint names s2): its copy may be stale
    src, blocked = plan_sources([hint(1, "s")], [["t", "r"]], "t", up("r", "s", "s2"), {"r": {1: "s2"}})
    assert src == [["s", "s2"]] and blocked == []


def test_down_but_answering_replica_without_hint_is_a_source() -> None:
    # both replicas were down at once: r answers (catching up) and no write of key 1 passed it by
    src, blocked = plan_sources([hint(1)], [["t", "r"]], "t", up("r"), {"r": {}})
    assert src == [["r"]] and blocked == []


def test_unreachable_standin_blocks() -> None:
    _, blocked = plan_sources([hint(1, "s")], [["t", "r"]], "t", up("r"))
    assert blocked == [0]


def test_no_source_while_a_replica_is_out_blocks() -> None:
    # r may hold the only copy: wait for it
    _, blocked = plan_sources([hint(1)], [["t", "r"]], "t", up())
    assert blocked == [0]


def test_every_replica_missed_a_delete_settles_as_deleted() -> None:
    # r answers but is hinted for the key with no stand-in either: a delete passed both by
    src, blocked = plan_sources([hint(1)], [["t", "r"]], "t", up("r"), {"r": {1: ""}})
    assert src == [[]] and blocked == []


def test_mutual_catch_up_reads_each_others_standins() -> None:
    # t and r both down and answering; each hint names a live stand-in: no deadlock
    hints = [hint(1, "s1"), hint(2, "")]
    src, blocked = plan_sources(hints, [["t", "r"], ["r", "t"]], "t", up("r", "s1", "s2"), {"r": {1: "s2", 2: "s2"}})
    assert src == [["s1", "s2"], ["s2"]] and blocked == []
