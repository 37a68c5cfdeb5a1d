"""The search executors over an in-memory node double (beside, never instead of, the real-process
congruence tests): protobuf requests in, protobuf answers out, compared with brute force."""

from __future__ import annotations

import asyncio

import numpy as np
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy import fielddata, searchexec
from shardproxy import rerank as rr
from shardproxy import searchplan as sp
from shardproxy.params import int_param, kv

DIM = 4


class Nodes:
    """Three shards of rows (id, vector, group); each answers a plain L2 search like a node."""

    def __init__(self, n: int, groups: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.vecs = rng.standard_normal((n, DIM)).astype(np.float32)
        self.group = [i % groups for i in range(n)]
        self.shard = [int(rng.integers(0, 3)) for _ in range(n)]
        self.calls: list[int] = []

    async def gather(self, reqs: dict[str, milvus_pb2.SearchRequest]) -> dict[str, milvus_pb2.SearchResults]:
        return {n: self.answer(int(n), r) for n, r in reqs.items()}

    def answer(self, shard: int, req: milvus_pb2.SearchRequest) -> milvus_pb2.SearchResults:
        topk = int_param(kv(req.search_params), "topk", 10)
        self.calls.append(topk)
        assert "group_by_field" not in kv(req.search_params)  # the proxy groups, the nodes do not
        group = common_pb2.PlaceholderGroup()
        group.ParseFromString(req.placeholder_group)
        q = np.frombuffer(group.placeholders[0].values[0], dtype=np.float32)
        mine = [i for i in range(len(self.vecs)) if self.shard[i] == shard]
        d = {i: float(((self.vecs[i] - q) ** 2).sum()) for i in mine}
        top = sorted(mine, key=lambda i: (d[i], i))[:topk]
        col = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="product")
        col.scalars.long_data.data.extend(self.group[i] for i in top)
        res = schema_pb2.SearchResultData(num_queries=1, top_k=topk, topks=[len(top)], scores=[d[i] for i in top],
                                          ids=fielddata.make_ids(top, False), output_fields=["product"],
                                          primary_field_name="id")
        res.fields_data.append(col)
        return milvus_pb2.SearchResults(results=res)

    def brute(self, q: np.ndarray) -> list[tuple[int, float]]:
        d = ((self.vecs - q) ** 2).sum(axis=1)
        return sorted(((i, float(d[i])) for i in range(len(d))), key=lambda x: (x[1], x[0]))


def _request(q: np.ndarray, **params: str) -> milvus_pb2.SearchRequest:
    group = common_pb2.PlaceholderGroup()
    group.placeholders.add(tag="$0", type=101, values=[q.astype(np.float32).tobytes()])
    r = milvus_pb2.SearchRequest(collection_name="c", placeholder_group=group.SerializeToString(), nq=1)
    r.output_fields.append("product")
    r.search_params.extend(common_pb2.KeyValuePair(key=k, value=v) for k, v in params.items())
    return r


def _plan(req: milvus_pb2.SearchRequest, group_by: str = "", size: int = 1) -> sp.SearchPlan:
    p = kv(req.search_params)
    return sp.SearchPlan(int_param(p, "topk", 10), int_param(p, "offset", 0), 1, "v", "L2", -1, group_by, size, p)


def test_grouped_search_widens_until_exact_and_fills_group_values() -> None:
    nodes = Nodes(3000, groups=60)  # 50 rows a group: the first window holds ~9 of a group
    q = np.zeros(DIM, dtype=np.float32)
    req = _request(q, topk="2", group_by_field="product", group_size="30")
    out = asyncio.run(searchexec.grouped_search(req, _plan(req, "product", 30), ["0", "1", "2"], nodes.gather))
    want: dict[int, list[int]] = {}
    for i, _ in nodes.brute(q):
        want.setdefault(nodes.group[i], [])
        if len(want[nodes.group[i]]) < 30:
            want[nodes.group[i]].append(i)
    expect = [i for g in list(want.values())[:2] for i in g]
    assert list(out.ids.int_id.data) == expect
    assert list(out.group_by_field_value.scalars.long_data.data) == [nodes.group[i] for i in expect]
    assert [fd.field_name for fd in out.fields_data] == ["product"]
    assert max(nodes.calls) > nodes.calls[0]  # the first window did not suffice


def test_ranked_search_reranks_the_global_window_once() -> None:
    nodes = Nodes(200, groups=10, seed=3)
    q = np.ones(DIM, dtype=np.float32)
    req = _request(q, topk="5")
    fn = req.function_score.functions.add(name="d", type=schema_pb2.FunctionType.Rerank, input_field_names=["product"])
    for k, v in {"reranker": "decay", "function": "linear", "origin": "3", "scale": "4"}.items():
        fn.params.append(common_pb2.KeyValuePair(key=k, value=v))
    ranker = rr.ranker_from_function(fn)
    out = asyncio.run(searchexec.ranked_search(req, _plan(req), ranker, ["0", "1", "2"], nodes.gather))
    window = nodes.brute(q)[:50]  # max(offset + limit, 10 * limit) candidates
    want = rr.rerank(ranker, [window], ["L2"], 0, 5, -1, {i: nodes.group[i] for i, _ in window})
    assert list(out.ids.int_id.data) == [pk for pk, _ in want]
    assert np.allclose(list(out.scores), [s for _, s in want])
