"""The write acknowledgement tally (no servers)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shardproxy.acks import needed_acks, tally


def test_needed_acks() -> None:
    assert needed_acks(1, 1, 3) == 1
    assert needed_acks(3, 3, 5) == 3  # all
    assert needed_acks(3, 2, 5) == 2  # quorum
    assert needed_acks(3, 3, 2) == 2  # never more than the ring has nodes
    assert needed_acks(1, 5, 3) == 1  # unreplicated: one ack


def test_tally_single_copy() -> None:
    parts = {"a": [0, 2], "b": [1, 3, 4]}
    t = tally(5, parts, {"a", "b"}, 1)
    assert t.ok_rows == [0, 1, 2, 3, 4] and t.err_rows == [] and t.complete
    t = tally(5, parts, {"a"}, 1)
    assert t.ok_rows == [0, 2] and t.err_rows == [1, 3, 4] and not t.complete


def test_tally_replicas_all_and_quorum() -> None:
    parts = {"a": [0, 1], "b": [1, 2], "c": [0, 2]}  # every row on two nodes
    assert tally(3, parts, {"a", "b"}, 2).err_rows == [0, 2]
    assert tally(3, parts, {"a", "b"}, 1).err_rows == []
    assert tally(3, parts, set(), 1).err_rows == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=3), st.data())
def test_tally_partitions_rows(n: int, needed: int, data: st.DataObject) -> None:
    nodes = ["a", "b", "c", "d"]
    parts = {nid: sorted(data.draw(st.sets(st.integers(0, n - 1)))) for nid in nodes}
    acked = data.draw(st.sets(st.sampled_from(nodes)))
    t = tally(n, parts, acked, needed)
    assert sorted(t.ok_rows + t.err_rows) == list(range(n))
    for row in range(n):
        acks = sum(1 for nid in acked if row in parts[nid])
        assert (row in t.ok_rows) == (acks >= needed)
