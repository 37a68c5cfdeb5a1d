"""Write RPCs: Insert, Upsert, Delete (by ids or by filter).

Planning: :meth:`Placement.write_targets` (R replicas on the target ring),
:meth:`Placement.holders` (deletes by id), :meth:`Placement.scatter_set` (filter deletes) and
:meth:`Placement.tombstone_keys` (touched marks for the migrator during a move). Execution:
:meth:`Scatter.write`; an insert/upsert is judged row by row by the ack tally
(:mod:`shardproxy.acks`), a delete by whether every key reached a replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy import fielddata, validation
from shardproxy.acks import needed_acks, tally
from shardproxy.errors import InvalidArgument, ProxyError, Unavailable, status_ok, to_milvus_status
from shardproxy.handlers.base import HandlerBase
from shardproxy.metastore import CollectionRecord
from shardproxy.nodequery import pk_expr
from shardproxy.placement import Placement
from shardproxy.rpc import rpc
from shardproxy.scatter import require_all, unknown_outcome

Key = int | str


class WriteHandlers(HandlerBase):
    def _validate_columns(self, rec: CollectionRecord, fields: Sequence[schema_pb2.FieldData], num_rows: int) -> None:
        known = set(rec.field_names)
        for fd in fields:
            if fd.is_dynamic:
                if not rec.dynamic:
                    raise InvalidArgument(f"collection {rec.name} has no dynamic field; unknown fields were sent")
                continue
            if fd.field_name not in known:
                raise InvalidArgument(f"field {fd.field_name!r} does not exist in collection {rec.name}")
            n = fielddata.num_rows(fd)
            if n != num_rows:
                raise InvalidArgument(f"field {fd.field_name!r} has {n} rows, but the request says {num_rows}")
            if fd.type == schema_pb2.DataType.FloatVector:
                dim = rec.dim(fd.field_name)
                if fd.vectors.dim != dim:
                    raise InvalidArgument(
                        f"field {fd.field_name!r}: vectors have dimension {fd.vectors.dim}, but the collection expects {dim}"
                    )
                validation.validate_matrix(fielddata.float_vectors(fd), dim, fd.field_name)

    async def _touch(self, rec: CollectionRecord, placement: Placement, pks: Sequence[Key], mark: str) -> None:
        """Tombstones / write marks for the migrator during a move (see shardproxy/migrator.py):
        written before the write itself, so a row being copied cannot come back or overwrite."""
        if placement.moving:
            claimed = await self.cluster.moves.touch(rec.key, placement.tombstone_keys(pks), mark)
            if claimed and mark == "w":  # the migrator is copying an older version: let it land first
                await self.cluster.moves.wait_released(rec.key, claimed)

    async def _pk_column(self, rec: CollectionRecord, method: str, fields: list[schema_pb2.FieldData],
                         num_rows: int) -> schema_pb2.FieldData:
        pk_col = fielddata.pk_column(fields, rec.pk_name)
        if pk_col is None:
            if not rec.auto_id:
                raise InvalidArgument(f"primary key field {rec.pk_name!r} is missing")
            ids = await self.cluster.reserve_ids(rec.key, num_rows)
            pk_col = schema_pb2.FieldData(type=rec.pk_field.data_type, field_name=rec.pk_name)
            if rec.pk_is_str:
                pk_col.scalars.string_data.data.extend(str(i) for i in ids)
            else:
                pk_col.scalars.long_data.data.extend(ids)
            fields.append(pk_col)
        elif rec.auto_id and method == "Insert":
            raise InvalidArgument(f"collection {rec.name} assigns ids itself (auto_id); do not send {rec.pk_name!r}")
        return pk_col

    async def _write(self, method: str, request: Any) -> milvus_pb2.MutationResult:
        rec = await self._collection(request)
        self._check_size(request)
        self.cluster.require_nodes()
        await self._check_partitions(rec, [request.partition_name])
        num_rows = int(request.num_rows)
        if num_rows == 0:
            raise InvalidArgument("no rows to write")
        fields = list(request.fields_data)
        pk_col = await self._pk_column(rec, method, fields, num_rows)
        self._validate_columns(rec, fields, num_rows)
        pks = fielddata.column_values(pk_col)
        if len(set(pks)) != len(pks) and method == "Upsert":
            raise InvalidArgument("duplicate primary keys in one upsert batch")
        placement = self.cluster.placement(rec)
        parts = placement.write_targets(pks)
        await self._touch(rec, placement, pks, "w")

        def build(rows: Any) -> Any:
            sub = type(request)()
            sub.db_name = rec.db
            sub.collection_name = request.collection_name
            sub.partition_name = request.partition_name
            sub.num_rows = len(rows)
            sub.fields_data.extend(fielddata.take_all(fields, rows))
            if method == "Upsert":
                sub.partial_update = request.partial_update
            return sub

        if rec.replicas > 1:  # sloppy quorum: stand-ins for replicas that are out, hints, ack tally
            res = await self.scatter.write_rows(rec, method, build, pks)
            return self._mutation(method, rec, pks, res.ok_rows, res.failed_rows, res.landed_rows, res.needed,
                                  res.reasons, res.first_error)
        reqs = {nid: build(rows) for nid, rows in parts.items()}
        results = await self.scatter.write(rec, method, reqs, {n: [pks[i] for i in r] for n, r in parts.items()})
        needed = needed_acks(rec.replicas, rec.acks_needed, len(placement.target))
        acked = {n for n, r in results.items() if not isinstance(r, BaseException)}
        acks = tally(num_rows, parts, acked, needed)
        errors = [(n, r) for n, r in results.items() if isinstance(r, BaseException)]
        reasons = [
            f"node {n} refused {len(parts[n])} row(s): {r.message if isinstance(r, ProxyError) else repr(r)}"
            + (("; they may still land there: the node is kept out until they are deleted again"
                if method == "Insert" else "; they may still land there (retrying the upsert is idempotent)")
               if unknown_outcome(r) else "")
            for n, r in errors
        ]
        return self._mutation(method, rec, pks, acks.ok_rows, acks.err_rows, [], needed, reasons,
                              errors[0][1] if errors else None)

    @staticmethod
    def _mutation(method: str, rec: CollectionRecord, pks: Sequence[Key], ok_rows: list[int],
                  err_rows: list[int], landed: list[int], needed: int, reasons: list[str],
                  first: BaseException | None) -> milvus_pb2.MutationResult:
        out = milvus_pb2.MutationResult(
            IDs=fielddata.make_ids(pks, rec.pk_is_str),  # type: ignore[arg-type]
            succ_index=ok_rows,
            err_index=err_rows,
        )
        if method == "Insert":
            out.insert_cnt = len(ok_rows)
        else:
            out.upsert_cnt = len(ok_rows)
        if err_rows:
            status = to_milvus_status(first or Unavailable("not enough replicas"))
            status.reason = (
                f"{method.lower()} partially failed: {len(err_rows)} of {len(pks)} row(s) not written"
                + (f" on {needed} of {rec.replicas} copies ({rec.write_ack}, stand-ins counted)" if rec.replicas > 1 else "")
                + " (err_index lists them)"
                + (f"; rows {landed[:50]} did land on fewer copies (retrying the upsert is idempotent)" if landed else "")
                + "; " + "; ".join(reasons[:10])
            )
            out.status.CopyFrom(status)
        else:
            out.status.CopyFrom(status_ok())
        return out

    @rpc(milvus_pb2.MutationResult)
    async def Insert(self, request: milvus_pb2.InsertRequest, context: Any) -> Any:
        return await self._write("Insert", request)

    @rpc(milvus_pb2.MutationResult)
    async def Upsert(self, request: milvus_pb2.UpsertRequest, context: Any) -> Any:
        return await self._write("Upsert", request)

    @rpc(milvus_pb2.MutationResult)
    async def Delete(self, request: milvus_pb2.DeleteRequest, context: Any) -> Any:
        rec = await self._collection(request)
        self._check_size(request)
        self.cluster.require_nodes()
        await self._check_partitions(rec, [request.partition_name])
        if not request.expr.strip():
            raise InvalidArgument("delete needs a filter expression or ids")
        validation.validate_filter(request.expr, rec.field_names, rec.dynamic)
        pks = validation.pk_list(request.expr, rec.pk_name, rec.pk_is_str)
        placement = self.cluster.placement(rec)
        if pks is None and rec.replicas > 1 and self._some_down(placement):
            # A filter delete while a replica is out: delete the matching keys by id, so the
            # missing replica gets them as hints (tombstones replayed when it answers again).
            pks = await self._matching_pks(rec, request.expr, request.partition_name)
            if not pks:
                return milvus_pb2.MutationResult(status=status_ok(), delete_cnt=0)
        if pks is None:
            return await self._delete_by_filter(rec, placement, request)
        # Tombstones first, then the delete: a row the migrator is copying cannot come back.
        await self._touch(rec, placement, pks, "d")
        holders = placement.delete_targets(pks, self.cluster.is_live)  # stand-ins included (R > 1)
        keys = {nid: [pks[i] for i in rows] for nid, rows in holders.items()}
        reqs = {
            nid: milvus_pb2.DeleteRequest(
                db_name=rec.db, collection_name=rec.name, partition_name=request.partition_name,
                expr=pk_expr(rec.pk_name, keys[nid], rec.pk_is_str),
            )
            for nid in holders
        }
        results = await self.scatter.write(rec, "Delete", reqs, keys)
        if rec.replicas > 1:
            # A replica that is down gets the delete later (hinted handoff); the others now.
            for r in results.values():
                if isinstance(r, BaseException) and not isinstance(r, Unavailable):
                    raise r
            if all(isinstance(r, BaseException) for r in results.values()):
                raise Unavailable("no replica of these keys answered; the delete is kept as hints and replayed")
            # Like Milvus 2.3.2+, report a count (not the deleted keys); each key is deleted on R replicas.
            return milvus_pb2.MutationResult(status=status_ok(), delete_cnt=len(set(pks)))
        done = require_all([self.cluster.client(n) for n in results], list(results.values()))
        return milvus_pb2.MutationResult(status=status_ok(), delete_cnt=sum(r.delete_cnt for r in done.values()))

    async def _delete_by_filter(self, rec: CollectionRecord, placement: Placement,
                                request: milvus_pb2.DeleteRequest) -> milvus_pb2.MutationResult:
        if placement.moving:
            # A filter delete during a move: find the matching keys first and write their
            # tombstones, so a row the migrator is copying cannot come back after the delete.
            await self._touch(rec, placement, await self._matching_pks(rec, request.expr), "d")
        results = await self.scatter.write(rec, "Delete", {n: request for n in placement.scatter_set()})
        done = require_all([self.cluster.client(n) for n in results], list(results.values()))
        return milvus_pb2.MutationResult(status=status_ok(), delete_cnt=sum(r.delete_cnt for r in done.values()))

    async def _matching_pks(self, rec: CollectionRecord, expr: str, partition: str = "") -> list[Key]:
        """Primary keys matching a filter (in ``partition``, when given) on every node that holds
        data (deduplicated)."""
        q = milvus_pb2.QueryRequest(db_name=rec.db, collection_name=rec.name, expr=expr, output_fields=[rec.pk_name],
                                    partition_names=[partition] if partition else [])
        placement = self.cluster.placement(rec)
        got = await self.scatter.read(rec, "Query", {n: q for n in placement.scatter_set()}, False, fanout=True)
        found: set[Key] = set()
        for r in got.results.values():
            for fd in r.fields_data:
                if fd.field_name == rec.pk_name:
                    found.update(fielddata.column_values(fd))
        return sorted(found, key=str)
