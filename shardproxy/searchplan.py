"""Validation and planning of one search request (plain, a hybrid sub-request, an iterator page):
which request fields the proxy understands, the page it asks for, and the per-node request.
Pure functions over protobufs; no I/O.

Every SearchRequest / HybridSearchRequest / QueryRequest field is either handled here, forwarded
to the nodes (who evaluate it per row: filters, template values, consistency, partitions), or
answered with UNIMPLEMENTED naming it: no field is silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy import orderby, validation
from shardproxy.errors import InvalidArgument, Unimplemented
from shardproxy.metastore import CollectionRecord
from shardproxy.params import int_param, kv, set_kv

# Fields that need a cross-shard reduce the proxy does not do (yet): named in the UNIMPLEMENTED.
SEARCH_UNIMPLEMENTED = {
    "ids": "search by primary keys (SearchRequest.ids)",
    "search_by_primary_keys": "search by primary keys (search_by_primary_keys)",
    "highlighter": "search highlighter",
    "search_aggregation": "search aggregation (search_aggregation)",
    "function_chains": "search function chains (function_chains)",
}
HYBRID_UNIMPLEMENTED = {"function_chains": "hybrid search function chains (function_chains)"}
# search_params keys with cross-shard meaning the proxy does not reproduce
PARAM_UNIMPLEMENTED = {"group_score": "group_score"}
QUERY_PARAM_UNIMPLEMENTED = {"group_by_fields": "query with group_by_fields (aggregation)"}
RANK_PARAM_UNIMPLEMENTED = {
    "group_by_field": "hybrid search with group_by_field",
    "group_size": "hybrid search with group_size",
    "strict_group_size": "hybrid search with strict_group_size",
    "rank_group_scorer": "hybrid search with rank_group_scorer",
    "order_by_fields": "hybrid search with order_by_fields",
}
TRUE_VALUES = ("true", "1", "t", "yes")


def flag(params: dict[str, str], key: str) -> bool:
    return (params.get(key) or "").strip('"').lower() in TRUE_VALUES


def check_fields(request: Any, unimplemented: dict[str, str], rpc: str) -> None:
    for fd, _ in request.ListFields():
        if fd.name in unimplemented:
            raise Unimplemented(f"{rpc} with {unimplemented[fd.name]} is not implemented by shardproxy")


def check_params(params: dict[str, str], unimplemented: dict[str, str], rpc: str) -> None:
    for key, what in unimplemented.items():
        if params.get(key) not in (None, ""):
            raise Unimplemented(f"{rpc} with {what} is not implemented by shardproxy")


@dataclass(frozen=True)
class SearchPlan:
    limit: int
    offset: int
    nq: int
    anns_field: str
    metric: str
    round_decimal: int
    group_by: str
    group_size: int
    params: dict[str, str]
    order_by: tuple[orderby.OrderKey, ...] = ()
    group_fields: tuple[str, ...] = ()  # group_by split into its fields


def _group_fields(params: dict[str, str], rec: CollectionRecord) -> tuple[str, ...]:
    """``group_by_field`` (one field; pymilvus's ``group_by_field=``) wins over ``group_by_fields``
    (``group_by_fields=[...]``, sent comma-joined), as in Milvus's ``parseGroupByInfo``."""
    single = (params.get("group_by_field") or "").strip()
    if single:
        if single not in rec.field_names:  # several fields in one string: milvus-lite says
            raise InvalidArgument(f"group_by_field {single!r} not found in schema")
        names: tuple[str, ...] = (single,)
    else:
        names = tuple(f.strip() for f in (params.get("group_by_fields") or "").split(",") if f.strip())
        for name in names:
            if name not in rec.field_names:
                raise InvalidArgument(f"groupBy field not found in schema: field not found[field={name}]")
    for name in names:
        if name in rec.vector_fields:
            raise InvalidArgument(f"group by field {name} has unsupported data type "
                                  f"{schema_pb2.DataType.Name(rec.field_types[name])}")
    return names


def plan_search(rec: CollectionRecord, request: milvus_pb2.SearchRequest, max_top_k: int, max_nq: int,
                rpc: str = "Search") -> SearchPlan:
    """Validate one SearchRequest against the collection; Milvus's own checks, before any node."""
    check_fields(request, SEARCH_UNIMPLEMENTED, rpc)
    if request.sub_reqs:
        raise Unimplemented("Search with sub_reqs is not implemented by shardproxy; use HybridSearch")
    params = kv(request.search_params)
    check_params(params, PARAM_UNIMPLEMENTED, rpc)
    limit = int_param(params, "topk", 10)
    offset = int_param(params, "offset", 0)
    validation.validate_limit(limit, offset, max_top_k)
    anns_field = params.get("anns_field") or rec.default_vector_field()
    if anns_field not in rec.vector_fields:
        raise InvalidArgument(f"vector field {anns_field!r} does not exist in collection {rec.name}")
    _, vectors, nq = validation.query_vectors(request.placeholder_group)
    if nq > max_nq:
        raise InvalidArgument(f"nq ({nq}) exceeds the limit of {max_nq} query vectors")
    if vectors is not None:
        validation.validate_vectors(vectors, rec.dim(anns_field))
    if request.dsl:
        validation.validate_filter(request.dsl, rec.field_names, rec.dynamic)
    validation.validate_output_fields(request.output_fields, rec.field_names, rec.dynamic)
    metric = (params.get("metric_type") or "").strip('"').upper() or rec.metric(anns_field) \
        or default_metric(rec.vector_fields[anns_field].data_type)
    group_fields = _group_fields(params, rec)
    group_by = ",".join(group_fields)
    group_size = int_param(params, "group_size", 1)
    if group_by and group_size < 1:
        raise InvalidArgument(f"group_size must be at least 1, got {group_size}")
    order = orderby.parse(params.get("order_by_fields"), rec.field_types, rec.dynamic)
    if order and flag(params, "iterator"):
        raise InvalidArgument("order_by is not supported when using search iterator")
    if order and len(request.function_score.functions):
        raise InvalidArgument("order_by and function_score cannot be used together")
    return SearchPlan(limit, offset, nq, anns_field, metric, int_param(params, "round_decimal", -1),
                      group_by, group_size, params, tuple(order), group_fields)


def node_request(request: milvus_pb2.SearchRequest, plan: SearchPlan, topk: int, *,
                 keep_round: bool = True, extra_output: Sequence[str] = ()) -> milvus_pb2.SearchRequest:
    """The request each node answers: the page's first ``topk`` hits, no offset (it applies once,
    after the merge), no rerank function (applied once, after the merge)."""
    sub = milvus_pb2.SearchRequest()
    sub.CopyFrom(request)
    set_kv(sub.search_params, "topk", str(topk))
    set_kv(sub.search_params, "offset", None)
    if not keep_round:
        set_kv(sub.search_params, "round_decimal", None)
    sub.ClearField("function_score")
    if request.nq == 0:
        sub.nq = plan.nq
    if sub.output_fields:
        for f in extra_output:
            if f not in sub.output_fields:
                sub.output_fields.append(f)
    return sub


def one_query(request: milvus_pb2.SearchRequest, q: int) -> milvus_pb2.SearchRequest:
    """The same request for its q-th query vector only."""
    group = common_pb2.PlaceholderGroup()
    group.ParseFromString(request.placeholder_group)
    for ph in group.placeholders:
        values = list(ph.values)
        del ph.values[:]
        ph.values.append(values[q])
    sub = milvus_pb2.SearchRequest()
    sub.CopyFrom(request)
    sub.placeholder_group = group.SerializeToString()
    sub.nq = 1
    return sub


def literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def restrict_to_groups(request: milvus_pb2.SearchRequest, field: str, values: Sequence[Any]) -> None:
    """AND the filter with ``field in [values]`` (the second phase of the group-by reduce)."""
    cond = f"{field} in [{', '.join(literal(v) for v in values)}]"
    request.dsl = f"({request.dsl}) and ({cond})" if request.dsl else cond


def default_metric(data_type: int) -> str:
    """The metric a node uses for a field searched without an index or an explicit metric_type:
    COSINE for float vectors (Milvus 2.4+ and milvus-lite), HAMMING for binary, IP for sparse."""
    if data_type == schema_pb2.DataType.BinaryVector:
        return "HAMMING"
    if data_type == schema_pb2.DataType.SparseFloatVector:
        return "IP"
    return "COSINE"
