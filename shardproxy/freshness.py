"""During a move, which copy of a row a read returns. Pure.

Writes go to a key's replicas on the *target* ring only, so while a move runs an old copy of an
upserted key can linger on a node that is no longer one of its target replicas (until the
migrator deletes it there). A get or query that finds the key on both must return the target
replica's copy, the one every acknowledged write reached. (Found by the history checker: gets
returned the preloaded value of keys upserted during an add with R = 2.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pymilvus.grpc_gen import schema_pb2

from shardproxy import fielddata
from shardproxy.placement import Placement


def prefer_target_copies(placement: Placement, per_node: Mapping[str, Sequence[schema_pb2.FieldData]],
                         pk_name: str) -> dict[str, list[schema_pb2.FieldData]]:
    """Per node, its rows minus those whose key some *target* replica of that key also returned
    (when this node is not one of them). Unchanged without a move."""
    out = {n: list(f) for n, f in per_node.items()}
    if not placement.moving:
        return out
    got = {n: fielddata.pk_column_values(f, pk_name) for n, f in out.items()}
    keys = sorted({pk for pks in got.values() for pk in pks}, key=lambda k: (isinstance(k, str), k))
    if not keys:
        return out
    pos = {k: i for i, k in enumerate(keys)}
    targets = {n: set(rows.tolist()) for n, rows in placement.write_targets(keys).items()}
    on_target = {pk for n, pks in got.items() for pk in pks if pos[pk] in targets.get(n, ())}
    for n, pks in got.items():
        mine = targets.get(n, set())
        keep = [i for i, pk in enumerate(pks) if pos[pk] in mine or pk not in on_target]
        if len(keep) != len(pks):
            out[n] = [fielddata.take(fd, keep) for fd in out[n]]
    return out
