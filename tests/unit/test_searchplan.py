"""Search planning helpers and the iterator v2 state: pure, no servers."""

from __future__ import annotations

import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy import searchexec, searchplan
from shardproxy.params import kv
from shardproxy.errors import Unimplemented


def _req(**params: str) -> milvus_pb2.SearchRequest:
    r = milvus_pb2.SearchRequest(collection_name="c")
    r.search_params.extend(common_pb2.KeyValuePair(key=k, value=v) for k, v in params.items())
    return r


def test_fields_the_proxy_does_not_reduce_are_refused_by_name() -> None:
    r = _req(topk="3")
    r.ids.int_id.data.extend([1, 2])
    with pytest.raises(Unimplemented, match="primary keys"):
        searchplan.check_fields(r, searchplan.SEARCH_UNIMPLEMENTED, "Search")
    r = _req(topk="3")
    r.search_aggregation.SetInParent()
    with pytest.raises(Unimplemented, match="search_aggregation"):
        searchplan.check_fields(r, searchplan.SEARCH_UNIMPLEMENTED, "Search")
    with pytest.raises(Unimplemented, match="group_score"):
        searchplan.check_params({"group_score": "max"}, searchplan.PARAM_UNIMPLEMENTED, "Search")
    searchplan.check_params({"group_score": ""}, searchplan.PARAM_UNIMPLEMENTED, "Search")  # empty: nothing asked
    with pytest.raises(Unimplemented, match="group_by_fields"):
        searchplan.check_params({"group_by_fields": "a,b"}, searchplan.QUERY_PARAM_UNIMPLEMENTED, "Query")
    with pytest.raises(Unimplemented, match="order_by_fields"):
        searchplan.check_params({"order_by_fields": "a"}, searchplan.RANK_PARAM_UNIMPLEMENTED, "HybridSearch")


def test_restrict_to_groups_and_one_query() -> None:
    r = _req()
    r.dsl = "price > 3"
    searchplan.restrict_to_groups(r, "brand", ["a", 'b"q'])
    assert r.dsl == '(price > 3) and (brand in ["a", "b\\"q"])'
    r2 = _req()
    searchplan.restrict_to_groups(r2, "product", [1, True])
    assert r2.dsl == "product in [1, true]"
    group = common_pb2.PlaceholderGroup()
    group.placeholders.add(tag="$0", type=101, values=[b"q0", b"q1", b"q2"])
    r3 = _req()
    r3.placeholder_group = group.SerializeToString()
    one = searchplan.one_query(r3, 1)
    parsed = common_pb2.PlaceholderGroup()
    parsed.ParseFromString(one.placeholder_group)
    assert list(parsed.placeholders[0].values) == [b"q1"] and one.nq == 1


def test_iterator_v2_one_token_for_every_node_and_global_bound() -> None:
    sub, token = searchexec.iterator_v2_request(_req(search_iter_v2="true"))
    assert kv(sub.search_params)["search_iter_id"] == token and token
    again, same = searchexec.iterator_v2_request(_req(search_iter_v2="true", search_iter_id=token))
    assert same == token
    nodes = [schema_pb2.SearchResultData(), schema_pb2.SearchResultData()]
    for n in nodes:
        n.search_iterator_v2_results.token = "node-own-token"
        n.search_iterator_v2_results.last_bound = 9.0
    out = schema_pb2.SearchResultData(scores=[0.1, 0.4, 0.7])
    searchexec.iterator_v2_results(out, nodes, token, 0.05)
    assert out.search_iterator_v2_results.token == token
    assert out.search_iterator_v2_results.last_bound == pytest.approx(0.7)  # the page's last hit, not a node's bound
    empty = schema_pb2.SearchResultData()
    searchexec.iterator_v2_results(empty, nodes, token, 0.05)
    assert empty.search_iterator_v2_results.last_bound == pytest.approx(0.05)


def test_iterator_v2_absent_when_a_node_does_not_speak_it() -> None:
    """milvus-lite answers without iterator state; so does the proxy, and pymilvus falls back to v1."""
    out = schema_pb2.SearchResultData(scores=[0.1])
    searchexec.iterator_v2_results(out, [schema_pb2.SearchResultData()], "t", None)
    assert not out.HasField("search_iterator_v2_results")


def test_default_metric_without_an_index_follows_the_vector_type() -> None:
    from pymilvus.grpc_gen import schema_pb2

    from shardproxy.searchplan import default_metric

    assert default_metric(schema_pb2.DataType.FloatVector) == "COSINE"
    assert default_metric(schema_pb2.DataType.BinaryVector) == "HAMMING"
    assert default_metric(schema_pb2.DataType.SparseFloatVector) == "IP"
