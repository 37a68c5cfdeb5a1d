"""The write acknowledgement tally. Pure: no I/O.

A write batch is split into parts, one per node (each row goes to R nodes). A row is written
when at least ``needed`` of the nodes it was sent to acknowledged it; the others are reported
in ``err_index``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AckTally:
    ok_rows: list[int]
    err_rows: list[int]

    @property
    def complete(self) -> bool:
        return not self.err_rows


def needed_acks(replicas: int, acks_needed: int, ring_size: int) -> int:
    """Acknowledgements a row needs: 1 without replication; otherwise the collection's write_ack
    requirement, at most the number of nodes on the ring."""
    return min(acks_needed, ring_size) if replicas > 1 else 1


def tally(num_rows: int, parts: Mapping[str, Sequence[int]], acked: Collection[str], needed: int) -> AckTally:
    """Rows of a batch written (``ok_rows``) or not (``err_rows``, ascending), given which
    node each part went to and which nodes acknowledged their part."""
    acks = np.zeros(num_rows, dtype=np.int32)
    for nid, rows in parts.items():
        if nid in acked:
            acks[np.asarray(rows, dtype=np.int64)] += 1
    return AckTally(
        ok_rows=np.flatnonzero(acks >= needed).tolist(),
        err_rows=np.flatnonzero(acks < needed).tolist(),
    )


# -- sloppy quorum: copies per row, stand-ins counted ---------------------------------------------
WRITE_ACKS = ("one", "quorum", "all")


def acks_needed(write_ack: str, replicas: int, ring_size: int) -> int:
    """Copies a row needs before it is acknowledged: ``one`` = 1, ``quorum`` = R // 2 + 1,
    ``all`` = R (never more than the ring has nodes)."""
    if write_ack not in WRITE_ACKS:
        raise ValueError(f"write_ack must be one of {', '.join(WRITE_ACKS)}, got {write_ack!r}")
    want = {"one": 1, "quorum": replicas // 2 + 1, "all": replicas}[write_ack]
    return max(1, min(want, ring_size))


def copies(num_rows: int, acknowledged: Iterable[Sequence[int] | np.ndarray]) -> np.ndarray:
    """Copies acknowledged per row, from the row lists of every send that succeeded (replica or
    stand-in alike)."""
    counts = np.zeros(num_rows, dtype=np.int32)
    for rows in acknowledged:
        if len(rows):
            np.add.at(counts, np.asarray(rows, dtype=np.int64), 1)
    return counts


def outcome(counts: np.ndarray, needed: int) -> tuple[list[int], list[int], list[int]]:
    """``(ok_rows, failed_rows, landed_rows)``: acknowledged; not; not acknowledged but written
    somewhere (a write reported as failed must undo these or name them)."""
    ok = np.flatnonzero(counts >= needed).tolist()
    failed = np.flatnonzero(counts < needed).tolist()
    landed = np.flatnonzero((counts > 0) & (counts < needed)).tolist()
    return ok, failed, landed
