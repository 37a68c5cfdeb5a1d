"""The write acknowledgement tally. Pure: no I/O.

A write batch is split into parts, one per node (each row goes to R nodes). A row is written
when at least ``needed`` of the nodes it was sent to acknowledged it; the others are reported
in ``err_index``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
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
