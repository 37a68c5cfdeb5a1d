"""The capacity model (bench/capacity.py): fits, the plan's arithmetic, and reading constants
from benchmark JSON (synthetic files here; the real ones come from `make bench`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import capacity as cap

GIB = 1024**3


def test_fits_recover_known_curves() -> None:
    pl = cap.fit_power_law([1e4, 1e5, 1e6], [2e-3 * x**0.5 for x in (1e4, 1e5, 1e6)])
    assert pl.b == pytest.approx(0.5) and pl.a == pytest.approx(2e-3)
    lin = cap.fit_linear([1, 2, 3], [10, 12, 14])
    assert (lin.base, lin.slope) == (pytest.approx(8), pytest.approx(2))
    with pytest.raises(cap.NotMeasured):
        cap.fit_power_law([5, 5], [1, 2])
    with pytest.raises(cap.NotMeasured):
        cap.fit_linear([5], [1])


def consts(b: float = 1.0, slope: float = 1500.0) -> cap.Constants:
    return cap.Constants(
        engine="e", index="FLAT", dim=256, memory=cap.Linear(200 * 2**20, slope),
        search_cpu_s=cap.PowerLaw(1e-7, b), p50_s=cap.PowerLaw(1e-7, b), cores_measured=2, tail=2.0,
        qps_per_proxy=400.0, images_per_s_per_worker=10.0, insert_rows_per_s=20_000.0, nodes_measured=3,
    )


def test_memory_bound_plan() -> None:
    c = consts()
    t = cap.Target(images=30_000_000, replicas=2, qps=1.0, p99_ms=60_000.0, node_memory_gib=64, usable_memory=0.5)
    p = cap.plan(c, t)
    per_node = (64 * GIB * 0.5 - 200 * 2**20) / 1500
    assert p.nodes_for_memory == math.ceil(30e6 * 2 / per_node)
    assert p.nodes == p.nodes_for_memory and p.memory_per_node_gib <= 64 * 0.5
    assert p.vectors_per_node == pytest.approx(30e6 * 2 / p.nodes)
    assert p.workers == math.ceil(30e6 / (10 * 3600 * 24)) and p.proxies == 1


def test_bytes_per_vector_never_below_the_raw_vector() -> None:
    t = cap.Target(images=30_000_000, replicas=2, qps=1.0, node_memory_gib=64, usable_memory=0.5)
    noisy = cap.plan(consts(slope=-300.0), t)  # RSS noise bigger than the vectors: a negative fitted slope
    raw = cap.plan(consts(slope=1024.0), t)
    assert noisy.nodes_for_memory == raw.nodes_for_memory
    assert any("below the raw float32 vector (1,024 bytes)" in n for n in noisy.notes)
    assert not any("below the raw" in n for n in raw.notes)


def test_qps_bound_plan_adds_nodes_and_proxies() -> None:
    c = consts()
    low = cap.plan(c, cap.Target(images=10_000_000, qps=1.0))
    high = cap.plan(c, cap.Target(images=10_000_000, qps=2000.0))
    assert high.nodes > low.nodes and high.nodes_for_qps == high.nodes
    assert high.qps_capacity >= 2000.0 and high.proxies == 5
    # linear per-node cost: QPS capacity grows with the node count
    assert high.search_cpu_ms_per_query_per_node < low.search_cpu_ms_per_query_per_node


def test_p99_bound_plan_adds_nodes_until_the_target_holds() -> None:
    c = consts()  # c(n) = 1e-7 s * n, proxy 2.5 ms per search, tail 2
    t = cap.Target(images=30_000_000, replicas=2, qps=1.0, p99_ms=60_000.0, node_memory_gib=64, usable_memory=0.5)
    loose = cap.plan(c, t)
    tight = cap.plan(c, cap.Target(**{**t.__dict__, "p99_ms": 100.0}))
    assert loose.nodes_for_p99 == loose.nodes_for_memory == loose.nodes
    assert tight.nodes == tight.nodes_for_p99 > loose.nodes
    assert tight.p99_ok and tight.p99_ms <= 100.0
    # the smallest such count (stepping by 5%): one step fewer misses the target
    fewer = (tight.nodes - 1) if tight.nodes < 20 else int(tight.nodes / 1.05)
    assert (1e-7 * 60e6 / fewer + 1 / 400) * 2 * 1000 > 100.0


def test_p99_below_the_proxy_floor_is_unreachable_and_said() -> None:
    c = consts()
    p = cap.plan(c, cap.Target(images=1_000_000, qps=1.0, p99_ms=4.0), max_nodes=2000)  # floor 2.5 ms * 2
    assert p.nodes_for_p99 is None and not p.p99_ok
    assert any("p99 <= 4 ms is not reachable" in n for n in p.notes)


def test_flat_cost_cannot_be_bought_with_nodes() -> None:
    c = cap.Constants(**{**consts().__dict__, "search_cpu_s": cap.PowerLaw(0.05, 0.0)})
    p = cap.plan(c, cap.Target(images=1_000_000, qps=10_000.0), max_nodes=2000)
    assert p.nodes_for_qps is None and any("not reachable" in n for n in p.notes)


def test_import_bounded_by_insert_rate() -> None:
    c = cap.Constants(**{**consts().__dict__, "insert_rows_per_s": 3.0})
    p = cap.plan(c, cap.Target(images=1_000_000, qps=1.0, import_hours=1.0))
    assert any("insert throughput" in n for n in p.notes)
    assert p.import_hours > 1.0


def small_extra(n: int) -> int:
    """Buffers that dominate RSS at small sizes (as measured below ~30k rows): gone at scale."""
    return 100 * 2**20 if n < 10_000 else 0


def write_results(d: Path, sizes: list[int], cpu: bool = True) -> None:
    runs = []
    for n in sizes:
        for engine in ("milvus-lite",):
            runs.append({
                "engine": engine, "index": "HNSW", "rows": n,
                "direct": {"rss_bytes": 300 * 2**20 + 1200 * n + small_extra(n), "batch_qps_nq100": 2 / (1e-6 * n**0.5),
                           "node_cpu_ms_per_query_nq100": 1e-3 * n**0.5 if cpu else None,
                           "search_p50_ms": 1000 * 2e-5 * n**0.25, "search_p99_ms": 1.0},
                "proxy": {"search_p50_ms": 2.0, "search_p99_ms": 5.0, "insert_rows_per_s": 9000.0,
                          "rss_bytes": 3 * 300 * 2**20 + 1200 * n + small_extra(n),
                          "node_cpu_ms_per_query_nq100": 3 * 1e-3 * (n / 3) ** 0.5 if cpu else None},
            })
    (d / "proxy_vs_direct.json").write_text(json.dumps(
        {"machine": {"cpus": 2}, "setup": {"dim": 256, "nodes_behind_proxy": 3}, "runs": runs}))
    (d / "concurrency.json").write_text(json.dumps({"points": [{"proxies": 1, "qps": 150.0}, {"proxies": 2, "qps": 250.0}]}))
    (d / "pipeline.json").write_text(json.dumps({"pipeline_images_per_s": 12.0}))


def test_constants_from_results_and_held_out_check(tmp_path: Path) -> None:
    write_results(tmp_path, [10_000, 30_000, 90_000])
    c = cap.constants_from_results(tmp_path, "milvus-lite", "HNSW")
    assert c.memory.slope == pytest.approx(1200) and c.search_cpu_s.b == pytest.approx(0.5)
    assert c.tail == pytest.approx(2.5) and c.qps_per_proxy == 150.0 and c.images_per_s_per_worker == 12.0
    checks = cap.check_against_measurements(tmp_path, "milvus-lite", "HNSW")
    rows = [r for r in checks if r["nodes"] == 1]
    assert [r["kind"] for r in rows] == ["fitted", "fitted", "held out"]
    last = rows[-1]
    assert last["rss_mib"]["predicted"] == pytest.approx(last["rss_mib"]["measured"])
    assert last["node_cpu_ms_per_query"]["predicted"] == pytest.approx(last["node_cpu_ms_per_query"]["measured"])
    # the 3 nodes behind the proxy, predicted as 3 nodes of rows/3: same model, other per-node sizes
    cluster = [r for r in checks if r["nodes"] == 3]
    assert [r["kind"] for r in cluster] == ["3 nodes x 3,333 rows", "3 nodes x 10,000 rows", "3 nodes x 30,000 rows"]
    for r in cluster[1:]:
        assert r["rss_mib"]["predicted"] == pytest.approx(r["rss_mib"]["measured"])
        assert r["node_cpu_ms_per_query"]["predicted"] == pytest.approx(r["node_cpu_ms_per_query"]["measured"], rel=0.05)
    assert r["search_p50_ms"] is None
    # without recorded node CPU the model falls back to cores / QPS (same curve here)
    write_results(tmp_path, [10_000, 30_000, 90_000], cpu=False)
    assert cap.constants_from_results(tmp_path).search_cpu_s.b == pytest.approx(0.5)


def test_memory_is_fitted_on_the_largest_sizes_only(tmp_path: Path) -> None:
    # 3k rows carry 100 MiB of buffers: a fit through them would overstate bytes/vector; the two
    # largest sizes give the true slope, and the small size shows up as predicted < measured
    write_results(tmp_path, [3_000, 30_000, 90_000])
    c = cap.constants_from_results(tmp_path, "milvus-lite", "HNSW")
    assert c.memory.slope == pytest.approx(1200) and c.memory.base == pytest.approx(300 * 2**20)
    small = next(r for r in cap.check_against_measurements(tmp_path) if r["rows"] == 3_000 and r["nodes"] == 1)
    assert small["rss_mib"]["measured"] - small["rss_mib"]["predicted"] == pytest.approx(100)
    with pytest.raises(cap.NotMeasured, match="two or more sizes"):
        cap.memory_fit([{"rows": 5, "direct": {"rss_bytes": 1}}] * 2)


def test_missing_measurements_name_the_benchmark(tmp_path: Path) -> None:
    with pytest.raises(cap.NotMeasured, match="proxy_vs_direct"):
        cap.constants_from_results(tmp_path)
    write_results(tmp_path, [10_000])
    with pytest.raises(cap.NotMeasured, match="two or more sizes"):
        cap.constants_from_results(tmp_path)
    with pytest.raises(cap.NotMeasured, match="IVF_FLAT"):
        cap.constants_from_results(tmp_path, index="IVF_FLAT")


def test_base_and_slope_from_single_nodes_and_clusters() -> None:
    base, slope = 250 * 2**20, 3000
    pts = [(k, n, k * base + slope * n) for n in (20_000, 50_000) for k in (1, 3)]
    fit = cap.fit_base_and_slope(pts)
    assert fit.base == pytest.approx(base) and fit.slope == pytest.approx(slope)
    # one node count only and one size: base and slope cannot be told apart
    with pytest.raises(cap.NotMeasured):
        cap.fit_base_and_slope([(1, 20_000, 1.0), (1, 20_000, 2.0)])


def test_scale_runs_join_the_fit_and_replace_equal_points(tmp_path: Path) -> None:
    """`make bench-scale` writes results/scale/proxy_vs_direct.json: its sizes join `make bench`'s,
    and a point measured in both is taken from the scale run."""
    write_results(tmp_path, [10_000, 30_000])
    (tmp_path / "scale").mkdir()
    write_results(tmp_path / "scale", [30_000, 300_000, 1_000_000])
    big = json.loads((tmp_path / "scale" / "proxy_vs_direct.json").read_text())
    big["runs"][0]["direct"]["search_p50_ms"] = 123.0  # the 30k point: the scale run's copy must win
    (tmp_path / "scale" / "proxy_vs_direct.json").write_text(json.dumps(big))
    merged = cap.proxy_vs_direct_runs(tmp_path)
    assert sorted(r["rows"] for r in merged["runs"]) == [10_000, 30_000, 300_000, 1_000_000]
    assert [r["direct"]["search_p50_ms"] for r in merged["runs"] if r["rows"] == 30_000] == [123.0]
    checks = cap.check_against_measurements(tmp_path, "milvus-lite", "HNSW")
    direct = [r for r in checks if r["nodes"] == 1]
    assert [(r["rows"], r["kind"]) for r in direct][-1] == (1_000_000, "held out")
    assert direct[-1]["node_cpu_ms_per_query"]["predicted"] == pytest.approx(direct[-1]["node_cpu_ms_per_query"]["measured"])
    # without the scale file, only make bench's sizes
    (tmp_path / "scale" / "proxy_vs_direct.json").unlink()
    assert sorted(r["rows"] for r in cap.proxy_vs_direct_runs(tmp_path)["runs"]) == [10_000, 30_000]


def test_tail_is_the_median_not_one_noisy_run(tmp_path: Path) -> None:
    write_results(tmp_path, [10_000, 30_000, 90_000])
    pvd = json.loads((tmp_path / "proxy_vs_direct.json").read_text())
    pvd["runs"][1]["proxy"]["search_p99_ms"] = 60.0  # one run's p99 30x its p50 (scheduling noise)
    (tmp_path / "proxy_vs_direct.json").write_text(json.dumps(pvd))
    assert cap.constants_from_results(tmp_path, "milvus-lite", "HNSW").tail == pytest.approx(2.5)


def test_with_four_sizes_the_largest_is_held_out_of_the_memory_fit_too(tmp_path: Path) -> None:
    write_results(tmp_path, [10_000, 30_000, 300_000, 1_000_000])
    pvd = json.loads((tmp_path / "proxy_vs_direct.json").read_text())
    pvd["runs"][-1]["direct"]["rss_bytes"] += 500 * 2**20  # 1M rows used more than the line predicts
    (tmp_path / "proxy_vs_direct.json").write_text(json.dumps(pvd))
    last = [r for r in cap.check_against_measurements(tmp_path, "milvus-lite", "HNSW") if r["nodes"] == 1][-1]
    assert last["kind"] == "held out"
    # predicted from the 30k and 300k points alone: exactly the line, 500 MiB below the measurement
    assert last["rss_mib"]["measured"] - last["rss_mib"]["predicted"] == pytest.approx(500, rel=1e-3)
