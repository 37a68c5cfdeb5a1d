"""Capacity model: how many Milvus nodes, proxies and embedding workers N images need, and how long
a full import takes. Every per-node constant comes from a measurement in ``bench/results/*.json``
(written by ``make bench``); nothing here is a guess, and a constant that was not measured makes the
model refuse with an error naming the benchmark to run.

Model (pure functions, plain data):

* **memory**: a node holding n vectors uses ``base + n * bytes_per_vector`` (fitted per engine and
  index type from node RSS after load + index build at the two largest measured sizes, the direct
  node and the 3 nodes behind the proxy together: ``rss = base * nodes + slope * rows``); nodes
  ``M_mem = ceil(N * R * bytes_per_vector / (node_memory * usable_fraction - base))``;
* **search**: the proxy fans every search out to every node, so every node serves the full QPS over
  its own ``n = N * R / M`` rows. CPU seconds per query on one node follow ``c(n) = a * n**b``
  (fitted from the node processes' CPU time per query in nq=100 batches at the measured sizes); a
  node with C cores serves
  ``C * utilisation / c(n)`` queries/s, so more nodes (smaller n) raise QPS until ``c(n)`` flattens.
  p99 ~= ``(c(n) + proxy CPU per search) * tail`` (one search runs on one core) with ``tail`` the median
  measured p99/p50 through the proxy;
* **proxies**: ``ceil(QPS / qps_per_proxy)``; a proxy is one Python process, so qps_per_proxy =
  1 / (proxy CPU seconds per search, the worst measured in the concurrency benchmark);
* **import**: workers ``ceil(N / (images_per_s_per_worker * 3600 * hours))``; import time is
  ``N / min(workers * images_per_s_per_worker, insert_rows_per_s * M / nodes_measured)``.

    python bench/capacity.py --images 30000000 --index HNSW --replicas 2 --qps 200 --p99-ms 100
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


class NotMeasured(LookupError):
    """A constant the model needs has no measurement yet."""


@dataclass(frozen=True)
class PowerLaw:
    """y = a * x**b, fitted in log-log space."""

    a: float
    b: float

    def __call__(self, x: float) -> float:
        return self.a * x**self.b


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> PowerLaw:
    """Least squares in log-log space; needs two distinct x values."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        raise NotMeasured("a power law needs measurements at two or more sizes")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    b = sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)
    return PowerLaw(math.exp(my - b * mx), b)


@dataclass(frozen=True)
class Linear:
    """y = base + slope * x (least squares)."""

    base: float
    slope: float

    def __call__(self, x: float) -> float:
        return self.base + self.slope * x


def fit_linear(xs: Sequence[float], ys: Sequence[float]) -> Linear:
    if len(set(xs)) < 2:
        raise NotMeasured("a linear fit needs measurements at two or more sizes")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return Linear(my - slope * mx, slope)


@dataclass(frozen=True)
class Constants:
    """Per-node constants of one engine and index type, from measurements."""

    engine: str
    index: str
    dim: int
    memory: Linear  # node RSS bytes vs vectors on the node
    search_cpu_s: PowerLaw  # CPU seconds per query (nq=100 batches) vs vectors on the node
    p50_s: PowerLaw  # nq=1 latency vs vectors on the node
    cores_measured: int  # cores the measured node could use
    tail: float  # p99 / p50 through the proxy (median over the measured sizes)
    qps_per_proxy: float
    images_per_s_per_worker: float
    insert_rows_per_s: float  # through the proxy, measured cluster
    nodes_measured: int
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    images: int
    index: str = "HNSW"
    replicas: int = 1
    qps: float = 100.0
    p99_ms: float = 200.0
    node_memory_gib: float = 64.0
    node_cores: int = 16
    usable_memory: float = 0.7  # leave room for compaction, index rebuilds, the OS
    utilisation: float = 0.6  # target CPU utilisation of a node at the target QPS
    vectors_per_image: float = 1.0
    import_hours: float = 24.0


@dataclass
class Plan:
    nodes: int
    nodes_for_memory: int
    nodes_for_qps: int | None  # None: unreachable by adding nodes (per-node cost does not fall enough)
    nodes_for_p99: int | None  # None: the p99 target is out of reach by adding nodes
    vectors_per_node: float
    memory_per_node_gib: float
    search_cpu_ms_per_query_per_node: float
    qps_capacity: float
    p99_ms: float
    p99_ok: bool
    proxies: int
    workers: int
    import_hours: float
    notes: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


GIB = 1024**3


def node_qps(c: Constants, t: Target, n: float) -> float:
    return t.node_cores * t.utilisation / c.search_cpu_s(max(n, 1.0))


def bytes_per_vector(c: Constants) -> float:
    """The fitted memory per vector, never below the raw float32 vector (4 * dim bytes) that FLAT,
    HNSW and IVF_FLAT all keep in memory."""
    return max(c.memory.slope, 4.0 * c.dim)


def _fewest_nodes(start: int, max_nodes: int, ok: Callable[[int], bool]) -> int | None:
    """The smallest node count from ``start`` (stepping by max(1, 5%)) for which ``ok`` holds."""
    m = start
    while m <= max_nodes:
        if ok(m):
            return m
        m = max(m + 1, int(m * 1.05))
    return None


def plan(c: Constants, t: Target, max_nodes: int = 100_000) -> Plan:
    vectors = t.images * t.vectors_per_image
    notes: list[str] = []
    room = t.node_memory_gib * GIB * t.usable_memory - max(c.memory.base, 0.0)
    per_vector = bytes_per_vector(c)
    if per_vector > c.memory.slope:
        notes.append(f"fitted {c.memory.slope:,.0f} bytes/vector is below the raw float32 vector ({per_vector:,.0f} bytes): "
                     "RSS noise at the measured sizes exceeds the vectors' memory, so the raw size is used")
    if room <= 0:
        raise ValueError("a node of this size cannot hold any vectors under the measured memory model")
    m_mem = max(1, math.ceil(vectors * t.replicas / (room / per_vector)))
    m_mem = max(m_mem, t.replicas)

    def p99_ms(m: int) -> float:
        # one search on a node runs on one core: its latency ~ its CPU time; plus the proxy's CPU per
        # search; times the measured tail (p99/p50). CPU times are robust to other load, wall-clock
        # p50 fits are not (they stay in the predicted-vs-measured check).
        return (c.search_cpu_s(vectors * t.replicas / m) + 1 / c.qps_per_proxy) * c.tail * 1000

    m_qps = _fewest_nodes(m_mem, max_nodes, lambda m: node_qps(c, t, vectors * t.replicas / m) >= t.qps)
    if m_qps is None:
        notes.append(f"{t.qps:g} QPS is not reachable by adding nodes (every node serves every query; "
                     "per-node cost flattens): add read replica groups / more cores per node")
    m_p99 = _fewest_nodes(max(m_mem, m_qps or m_mem), max_nodes, lambda m: p99_ms(m) <= t.p99_ms)
    if m_p99 is None:
        notes.append(f"p99 <= {t.p99_ms:g} ms is not reachable by adding nodes (the proxy's "
                     f"{1000 / c.qps_per_proxy:.1f} ms per search times the measured tail {c.tail:.1f} stays); "
                     "the plan sizes for memory and QPS and states its p99")
    nodes = max(m_mem, m_qps or m_mem, m_p99 or m_mem)
    n = vectors * t.replicas / nodes
    p99 = p99_ms(nodes)
    if c.search_cpu_s.b < 0.3:
        notes.append(f"search cost grows as n^{c.search_cpu_s.b:.2f} on one node (sub-linear: graph/cluster index)")
    proxies = max(1, math.ceil(t.qps / c.qps_per_proxy))
    workers = max(1, math.ceil(t.images / (c.images_per_s_per_worker * 3600 * t.import_hours)))
    ingest = min(workers * c.images_per_s_per_worker,
                 c.insert_rows_per_s * nodes / c.nodes_measured / t.vectors_per_image)
    if ingest < workers * c.images_per_s_per_worker:
        notes.append("import is bounded by insert throughput of the nodes, not by the workers")
    return Plan(
        nodes=nodes, nodes_for_memory=m_mem, nodes_for_qps=m_qps, nodes_for_p99=m_p99, vectors_per_node=n,
        memory_per_node_gib=(max(c.memory.base, 0.0) + per_vector * n) / GIB, search_cpu_ms_per_query_per_node=c.search_cpu_s(n) * 1000,
        qps_capacity=node_qps(c, t, n), p99_ms=p99, p99_ok=p99 <= t.p99_ms,
        proxies=proxies, workers=workers, import_hours=t.images / ingest / 3600, notes=notes,
    )


# -- constants from bench/results --------------------------------------------------------------
SCALE_DIR = "scale"  # `make bench-scale` writes proxy_vs_direct at 100k-1M rows here


def _load(results: Path, name: str) -> dict:
    path = results / f"{name}.json"
    if not path.exists():
        raise NotMeasured(f"{path} is missing: run `make bench` (or bench/run_all.py --only {name})")
    return json.loads(path.read_text())


def proxy_vs_direct_runs(results: Path) -> dict:
    """``proxy_vs_direct.json`` of ``make bench`` with the runs of ``make bench-scale``
    (``results/scale/proxy_vs_direct.json``, when present) added: the fits then span 10k to 1M rows.
    Each run keeps its own load record; a (engine, index, rows) measured in both keeps the scale run's."""
    pvd = _load(results, "proxy_vs_direct")
    scale = results / SCALE_DIR / "proxy_vs_direct.json"
    if not scale.exists():
        return pvd
    big = json.loads(scale.read_text())
    keys = {(r["engine"], r["index"], r["rows"]) for r in big["runs"]}
    runs = [r for r in pvd["runs"] if (r["engine"], r["index"], r["rows"]) not in keys]
    runs += [r | {"source": "scale"} for r in big["runs"]]
    return pvd | {"runs": runs}


def node_cpu_s(run: dict, cores: int) -> float:
    """CPU seconds one node spends per query (nq=100 batches): measured from the node processes'
    CPU time when recorded (robust to other load), else cores / QPS (assumes the node had every core)."""
    d = run["direct"]
    if d.get("node_cpu_ms_per_query_nq100"):
        return float(d["node_cpu_ms_per_query_nq100"]) / 1000
    return cores / float(d["batch_qps_nq100"])


MEMORY_FIT_SIZES = 2


def fit_base_and_slope(points: Sequence[tuple[float, float, float]]) -> Linear:
    """Least squares for ``rss = base * nodes + slope * rows`` over ``(nodes, rows, rss)`` points:
    one node's fixed memory and the memory per vector, from single nodes and clusters alike."""
    saa = sum(k * k for k, _, _ in points)
    sab = sum(k * n for k, n, _ in points)
    sbb = sum(n * n for _, n, _ in points)
    say = sum(k * y for k, _, y in points)
    sby = sum(n * y for _, n, y in points)
    det = saa * sbb - sab * sab
    if abs(det) < 1e-9 * max(saa * sbb, 1.0):
        raise NotMeasured("memory per vector needs proxy_vs_direct at two or more sizes")
    return Linear((say * sbb - sab * sby) / det, (saa * sby - sab * say) / det)


def memory_fit(runs: Sequence[dict]) -> Linear:
    """Node RSS = base + n * bytes_per_vector, fitted over the ``MEMORY_FIT_SIZES`` largest measured
    sizes only (at small sizes insert buffers, segment overhead and allocator slack dominate RSS, so
    a fit there overstated bytes per vector by up to ~8x at <= 27k rows), using both the direct node
    (1 node, all rows) and the nodes behind the proxy (their summed RSS: ``nodes`` bases, all rows),
    after load and index build."""
    sizes = sorted({int(r["rows"]) for r in runs})[-MEMORY_FIT_SIZES:]
    if len(sizes) < 2:
        raise NotMeasured("memory per vector needs proxy_vs_direct at two or more sizes")
    pts: list[tuple[float, float, float]] = []
    for r in runs:
        if int(r["rows"]) in sizes:
            pts.append((1.0, float(r["rows"]), float(r["direct"]["rss_bytes"])))
            if r["proxy"].get("rss_bytes"):
                pts.append((float(r.get("nodes_behind_proxy", 3)), float(r["rows"]), float(r["proxy"]["rss_bytes"])))
    return fit_base_and_slope(pts)


def constants_from_results(results: Path = RESULTS, engine: str = "milvus-lite", index: str = "HNSW",
                           sizes: Sequence[int] | None = None, pipeline_json: Path | None = None) -> Constants:
    """Fit the constants of ``engine``/``index`` from the JSON the benchmarks wrote; ``sizes``
    restricts the fit to some measured sizes (to check the model on a held-out size)."""
    pvd = proxy_vs_direct_runs(results)
    runs = [r for r in pvd["runs"] if r["engine"] == engine and r["index"] == index
            and (sizes is None or r["rows"] in sizes)]
    if not runs:
        raise NotMeasured(f"no proxy_vs_direct run for engine={engine} index={index}")
    n = [float(r["rows"]) for r in runs]
    mem = memory_fit(runs)
    cores = int(pvd["machine"]["cpus"])
    cpu = fit_power_law(n, [node_cpu_s(r, cores) for r in runs])
    p50 = fit_power_law(n, [r["direct"]["search_p50_ms"] / 1000 for r in runs])
    # the median over the measured sizes: one run's p99 on a shared 2-core box can be scheduling noise
    # (a real Milvus direct node's p99/p50 reached 34 at one size), which a max would carry into every plan
    tail = statistics.median(r["proxy"]["search_p99_ms"] / r["proxy"]["search_p50_ms"] for r in runs)
    conc = _load(results, "concurrency")
    one = [p for p in conc["points"] if p["proxies"] == 1]
    cpu_ms = [p["proxy_cpu_ms_per_search"] for p in one if p.get("proxy_cpu_ms_per_search")]
    # a proxy is one Python process (one core): its CPU per search bounds its QPS, whatever else
    # loaded the machine; without that record, the best QPS measured through one proxy
    qps_proxy = 1000 / max(cpu_ms) if cpu_ms else max(p["qps"] for p in one)
    pipe = json.loads(pipeline_json.read_text()) if pipeline_json else _load(results, "pipeline")
    biggest = max(runs, key=lambda r: r["rows"])
    return Constants(
        engine=engine, index=index, dim=int(pvd["setup"]["dim"]), memory=mem, search_cpu_s=cpu, p50_s=p50,
        cores_measured=cores, tail=tail, qps_per_proxy=qps_proxy,
        images_per_s_per_worker=float(pipe["pipeline_images_per_s"]),
        insert_rows_per_s=float(biggest["proxy"]["insert_rows_per_s"]), nodes_measured=int(pvd["setup"]["nodes_behind_proxy"]),
        sources={"memory, search, p50, tail, insert": "proxy_vs_direct.json (+ scale/proxy_vs_direct.json)", "qps_per_proxy": "concurrency.json",
                 "images_per_s_per_worker": "pipeline.json"},
    )


def check_against_measurements(results: Path = RESULTS, engine: str = "milvus-lite", index: str = "HNSW") -> list[dict]:
    """Predicted vs measured per measured size: the direct node (all rows on one node) and the
    cluster behind the proxy (``nodes`` nodes of about rows/nodes each, predicted as ``nodes`` times
    one node of that size, so a check at a per-node size the direct fit never saw). With three or
    more sizes the largest is held out of the CPU and latency fits. The memory fit uses the two
    largest sizes (:func:`memory_fit`): with four or more sizes it is held out of that too (fitted on
    the next two), with three it is part of it (the smaller sizes are dominated by buffers)."""
    pvd = proxy_vs_direct_runs(results)
    runs = sorted((r for r in pvd["runs"] if r["engine"] == engine and r["index"] == index), key=lambda r: r["rows"])
    sizes = sorted({r["rows"] for r in runs})
    held_out = sizes[-1] if len(sizes) >= 3 else None
    fit_sizes = [s for s in sizes if s != held_out]
    c = constants_from_results(results, engine, index, fit_sizes)
    mem = c.memory if len(sizes) >= 4 else memory_fit(runs)
    nodes = c.nodes_measured
    out = []
    for r in runs:
        n = r["rows"]
        out.append({
            "rows": n, "kind": "held out" if n == held_out else "fitted", "nodes": 1,
            "rss_mib": {"predicted": mem(n) / 2**20, "measured": r["direct"]["rss_bytes"] / 2**20},
            "node_cpu_ms_per_query": {"predicted": c.search_cpu_s(n) * 1000, "measured": node_cpu_s(r, c.cores_measured) * 1000},
            "search_p50_ms": {"predicted": c.p50_s(n) * 1000, "measured": r["direct"]["search_p50_ms"]},
        })
        cpu = r["proxy"].get("node_cpu_ms_per_query_nq100")
        out.append({
            "rows": n, "kind": f"{nodes} nodes x {n / nodes:,.0f} rows", "nodes": nodes,
            "rss_mib": {"predicted": nodes * mem(n / nodes) / 2**20, "measured": r["proxy"]["rss_bytes"] / 2**20},
            "node_cpu_ms_per_query": ({"predicted": nodes * c.search_cpu_s(n / nodes) * 1000, "measured": float(cpu)}
                                      if cpu else None),
            "search_p50_ms": None,  # through the proxy: not one node's latency
        })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, nargs="+", default=[30_000_000, 300_000_000])
    ap.add_argument("--engine", default="milvus-lite")
    ap.add_argument("--index", default="HNSW")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--qps", type=float, default=100.0)
    ap.add_argument("--p99-ms", type=float, default=200.0)
    ap.add_argument("--node-memory-gib", type=float, default=64.0)
    ap.add_argument("--node-cores", type=int, default=16)
    ap.add_argument("--import-hours", type=float, default=24.0)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--pipeline-json", type=Path, default=None,
                    help="take images/s per worker from this pipeline.json (e.g. a run on a quiet machine)")
    args = ap.parse_args()
    c = constants_from_results(args.results, args.engine, args.index, pipeline_json=args.pipeline_json)
    print(json.dumps({"constants": asdict(c)}, indent=2, default=str))
    for n in args.images:
        t = Target(images=n, index=args.index, replicas=args.replicas, qps=args.qps, p99_ms=args.p99_ms,
                   node_memory_gib=args.node_memory_gib, node_cores=args.node_cores, import_hours=args.import_hours)
        print(json.dumps({"target": asdict(t), "plan": plan(c, t).as_dict()}, indent=2))


if __name__ == "__main__":
    main()
