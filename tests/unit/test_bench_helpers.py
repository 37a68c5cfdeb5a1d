"""Pure helpers shared by the benchmarks (bench/common.py) and the report's cells (bench/report.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import common, report


def test_interleaved_latency_calls_every_target_per_query_in_rotating_order() -> None:
    order: list[tuple[str, int]] = []
    calls = {k: (lambda q, k=k: order.append((k, q))) for k in ("a", "b", "c")}
    lat = common.interleaved_latency(calls, [0, 1, 2, 3])
    assert order[:3] == [("a", 0), ("b", 0), ("c", 0)] and order[3:6] == [("a", 1), ("b", 1), ("c", 1)]
    assert {k: len(v) for k, v in lat.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(x >= 0 for v in lat.values() for x in v)
    order.clear()
    common.interleaved_latency(calls, [0, 1, 2], rotate=True)
    assert [k for k, _ in order] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_latency_summary_in_ms() -> None:
    s = common.latency_summary([0.001] * 99 + [0.101])
    assert s["search_p50_ms"] == pytest.approx(1.0)
    assert s["search_p99_ms"] == pytest.approx(2.0)  # numpy's linear interpolation between 1 ms and 101 ms
    assert s["search_mean_ms"] == pytest.approx(2.0)
    assert np.isnan(common.latency_summary([])["search_p50_ms"])


def test_exact_top10_is_brute_force() -> None:
    vecs = np.arange(40, dtype=np.float32).reshape(20, 2)
    truth = common.exact_top10(vecs, vecs[[0, 19]])
    assert truth == [set(range(10)), set(range(10, 20))]


def test_report_cells() -> None:
    assert report.vs(1000, 1500, 1.5, bold=True) == "1,000 / 1,500 = **1.50**"
    assert report.vs(1.25, 2.5, 2.0, 1) == "1.2 / 2.5 = 2.00"
    assert report.pred_vs_meas({"predicted": 30.0, "measured": 20.0}) == "30 / 20 = 1.50"
    assert report.load_span({"load_before": {"loadavg": [1.0, 0, 0]}, "load_after": {"loadavg": [3.25, 0, 0]}}) == "1.0→3.2"
    assert report.load_span({}) == "?→?"


def test_merge_invocations_tags_runs_and_keeps_each_load() -> None:
    from bench.proxy_vs_direct import merge_invocations

    def doc(engine: str, sizes: list[int], load: float) -> dict:
        rec = {"loadavg": [load, 0, 0]}
        return {"argv": f"bench/proxy_vs_direct.py --engines {engine}", "machine": {"cpus": 2},
                "setup": {"dim": 256, "sizes": {engine: sizes}}, "load_before": rec, "load_after": rec,
                "runs": [{"engine": engine, "index": "HNSW", "rows": n} for n in sizes], "skipped": ["x"] if load > 5 else []}

    m = merge_invocations([doc("milvus-lite", [30_000, 100_000], 3.0), doc("milvus", [20_000, 50_000], 9.0)])
    assert [(r["engine"], r["rows"], r["invocation"]) for r in m["runs"]] == [
        ("milvus-lite", 30_000, 1), ("milvus-lite", 100_000, 1), ("milvus", 20_000, 2), ("milvus", 50_000, 2)]
    assert m["setup"]["sizes"] == {"milvus-lite": [30_000, 100_000], "milvus": [20_000, 50_000]}
    assert [i["argv"] for i in m["invocations"]] == ["bench/proxy_vs_direct.py --engines milvus-lite",
                                                     "bench/proxy_vs_direct.py --engines milvus"]
    assert m["load_before"]["loadavg"][0] == 3.0 and m["load_after"]["loadavg"][0] == 9.0
    assert m["skipped"] == ["invocation 2: x"] and m["machine"] == {"cpus": 2}


def test_bench_clients_never_ping_an_idle_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """pymilvus pings every 10 s even when idle; milvus-lite's default gRPC server policy answers
    that with GOAWAY too_many_pings after ~80 s of idle (a concurrency run lost its loader's
    channel that way). Bench clients ping only during calls, at most every 5 minutes (the
    server's minimum), and a dedicated client has its own subchannel."""
    import pymilvus

    made: list[dict] = []
    monkeypatch.setattr(pymilvus, "MilvusClient", lambda **kw: made.append(kw))
    common.client("http://127.0.0.1:1")
    common.client(uri="http://127.0.0.1:2", token="root:x", dedicated=True, grpc_options={"grpc.enable_retries": 0})
    shared, dedicated = made
    for kw in made:
        opts = kw["grpc_options"]
        assert opts["grpc.keepalive_permit_without_calls"] is False
        assert opts["grpc.keepalive_time_ms"] >= 300_000
    assert shared["uri"] == "http://127.0.0.1:1" and shared["dedicated"] is False
    assert "grpc.use_local_subchannel_pool" not in shared["grpc_options"]
    assert dedicated["dedicated"] is True and dedicated["token"] == "root:x"
    assert dedicated["grpc_options"]["grpc.use_local_subchannel_pool"] == 1
    assert dedicated["grpc_options"]["grpc.enable_retries"] == 0  # the caller's options are kept
