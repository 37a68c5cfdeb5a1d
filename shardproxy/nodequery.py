"""Queries against one Milvus node, shared by the migrator, hinted handoff and count-distinct:
``pk in [...]`` expressions, primary-key scans in pk order, fetching rows by pk.

Depends only on the node client and the collection record (no servicer, no cluster)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy import fielddata
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient

Key = int | str


def pk_expr(pk_name: str, values: Sequence[Key], is_str: bool) -> str:
    """``pk in [...]`` for a list of keys (strings JSON-quoted)."""
    if is_str:
        quoted = ",".join(json.dumps(str(v)) for v in values)
        return f"{pk_name} in [{quoted}]"
    return f"{pk_name} in [{','.join(str(int(v)) for v in values)}]"


def after_expr(pk_name: str, last: Key | None, is_str: bool) -> str:
    """Keys after ``last`` (every key when None)."""
    if last is None:
        return f'{pk_name} >= ""' if is_str else f"{pk_name} >= -9223372036854775808"
    if is_str:
        return f"{pk_name} > {json.dumps(str(last))}"
    return f"{pk_name} > {int(last)}"


def kvs(**kw: str) -> list[common_pb2.KeyValuePair]:
    return [common_pb2.KeyValuePair(key=k, value=v) for k, v in kw.items()]


async def scan_pks(client: NodeClient, rec: CollectionRecord, last: Key | None, batch: int,
                   extra: str = "") -> list[Key]:
    """The next ``batch`` primary keys of ``rec`` on one node after ``last``, ascending (and
    matching the filter ``extra`` when given)."""
    expr = after_expr(rec.pk_name, last, rec.pk_is_str)
    if extra.strip():
        expr = f"({extra}) and {expr}"
    req = milvus_pb2.QueryRequest(
        db_name=rec.db, collection_name=rec.name, expr=expr, output_fields=[rec.pk_name],
        query_params=kvs(limit=str(batch), iterator="True", reduce_stop_for_best="True"),
        consistency_level=common_pb2.ConsistencyLevel.Strong,
    )
    resp = await client.call("Query", req)
    col = next((fd for fd in resp.fields_data if fd.field_name == rec.pk_name), None)
    pks = fielddata.column_values(col) if col is not None else []
    pks.sort()
    return pks


async def scan_all_pks(client: NodeClient, rec: CollectionRecord, batch: int, extra: str = "") -> list[Key]:
    """Every primary key of ``rec`` on one node (matching ``extra``), ascending, ``batch`` at a time."""
    out: list[Key] = []
    last: Key | None = None
    while True:
        pks = await scan_pks(client, rec, last, batch, extra=extra)
        out.extend(pks)
        if len(pks) < batch:
            return out
        last = pks[-1]


async def fetch_rows_by_partition(client: NodeClient, rec: CollectionRecord,
                                  pks: Sequence[Key]) -> list[tuple[str, list[schema_pb2.FieldData]]]:
    """Full rows of the given keys on one node, grouped by the partition they are in, so a copy
    (rebalance, hinted handoff) lands in the same partition. One group with partition "" (let
    the node decide: ``_default``, or the partition key's) when the user created no partition."""
    if not rec.partitions or rec.partition_key:
        return [("", await fetch_rows(client, rec, pks))]
    out = []
    for part in ("_default", *rec.partitions):
        fields = await fetch_rows(client, rec, pks, partition=part)
        if fields and fielddata.num_rows(fields[0]):
            out.append((part, fields))
    return out


async def copy_rows(src: NodeClient, dst: NodeClient, rec: CollectionRecord, pks: Sequence[Key]) -> int:
    """Upsert the rows of ``pks`` that ``src`` holds onto ``dst``, each in its partition and the
    collection's database (repair, node rebuild). Returns the rows copied (keys ``src`` no longer
    holds are skipped)."""
    copied = 0
    for partition, fields in await fetch_rows_by_partition(src, rec, pks):
        n = len(fielddata.pk_column_values(fields, rec.pk_name))
        if not n:
            continue
        req = milvus_pb2.UpsertRequest(db_name=rec.db, collection_name=rec.name, partition_name=partition, num_rows=n)
        req.fields_data.extend(fields)
        await dst.write("Upsert", rec.key, req)
        copied += n
    return copied


async def fetch_rows(client: NodeClient, rec: CollectionRecord, pks: Sequence[Key],
                     partition: str = "") -> list[schema_pb2.FieldData]:
    """Full rows (``output_fields=["*"]``) of the given keys on one node."""
    req = milvus_pb2.QueryRequest(
        db_name=rec.db, collection_name=rec.name, expr=pk_expr(rec.pk_name, pks, rec.pk_is_str), output_fields=["*"],
        query_params=kvs(limit=str(len(pks))), consistency_level=common_pb2.ConsistencyLevel.Strong,
        partition_names=[partition] if partition else [],
    )
    resp = await client.call("Query", req)
    return list(resp.fields_data)


async def scan_rows(client: NodeClient, rec: CollectionRecord, request: milvus_pb2.QueryRequest,
                    fields: Sequence[str], batch: int, cap: int) -> list[schema_pb2.FieldData]:
    """The rows of one node matching ``request`` (its filter, template values, partitions and
    consistency), primary key plus ``fields``, in pk order, ``batch`` at a time; stops after
    ``cap + 1`` rows (the caller refuses a scan that is over its bound)."""
    pieces: list[list[schema_pb2.FieldData]] = []
    last: Key | None = None
    total = 0
    while True:
        req = milvus_pb2.QueryRequest()
        req.CopyFrom(request)
        cond = after_expr(rec.pk_name, last, rec.pk_is_str)
        req.expr = f"({request.expr}) and {cond}" if request.expr.strip() else cond
        del req.output_fields[:]
        req.output_fields.extend([rec.pk_name, *(f for f in fields if f != rec.pk_name)])
        del req.query_params[:]
        req.query_params.extend(kvs(limit=str(batch), iterator="True", reduce_stop_for_best="True"))
        resp = await client.call("Query", req)
        cols = list(resp.fields_data)
        pk_col = next((fd for fd in cols if fd.field_name == rec.pk_name), None)
        pks = fielddata.column_values(pk_col) if pk_col is not None else []
        if pks:
            pieces.append(cols)
            total += len(pks)
        if len(pks) < batch or total > cap:
            break
        last = max(pks)
    if not pieces:
        return []
    return [fielddata.concat([next(fd for fd in p if fd.field_name == c.field_name and fd.is_dynamic == c.is_dynamic)
                              for p in pieces]) for c in pieces[0]]
