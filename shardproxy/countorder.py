"""In which order count(*) reads the nodes during a move, so that a row in flight is counted
exactly once. Pure.

The migrator copies a key to its new node, then deletes it on the old one. Counting distinct
primary keys over all nodes removes the double count of a row seen on both; reading every
node that *gives keys away* before any node that *receives* them removes the miss (a row read
after its copy left the old node and before it reached the new one cannot happen: if the old
node was read before the delete it was counted there; otherwise the copy had landed already, and
the new node is read later). Receivers: joining nodes during an add; every target-ring node
during a drain."""

from __future__ import annotations

from collections.abc import Sequence

from shardproxy.metastore import NodeRecord, NodeState


def count_phases(nodes: Sequence[NodeRecord], scatter: Sequence[str]) -> list[list[str]]:
    """``scatter`` split into [givers, receivers] (read in that order); one phase without a move."""
    state = {n.id: n.state for n in nodes}
    joining = [n for n in scatter if state.get(n) == NodeState.JOINING]
    draining = [n for n in scatter if state.get(n) == NodeState.DRAINING]
    if joining:
        return [[n for n in scatter if n not in joining], joining]
    if draining:
        return [draining, [n for n in scatter if n not in draining]]
    return [list(scatter)]
