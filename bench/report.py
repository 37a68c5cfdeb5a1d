"""Render bench/REPORT.md from bench/results/*.json: one table per benchmark, each figure a ratio
to the baseline measured in the same run with the absolute numbers beside it, and the machine load
recorded with every run. Pure rendering: reads JSON, writes one Markdown file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import capacity

Section = Callable[[Path], list[str]]


def _load(results: Path, name: str) -> dict | None:
    p = results / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def la(rec: dict | None) -> str:
    """'3.1' from a load record (1-minute load average)."""
    return f"{rec['loadavg'][0]:.1f}" if rec else "?"


def loads(d: dict) -> str:
    return f"load {la(d.get('load_before'))} → {la(d.get('load_after'))} on {d.get('machine', {}).get('cpus', '?')} cores"


def n(x: float, digits: int = 0) -> str:
    if x != x:  # NaN
        return "–"
    return f"{x:,.{digits}f}"


def vs(a: float, b: float, ratio: float, digits: int = 0, bold: bool = False) -> str:
    """A table cell 'a / b = ratio' (the ratio in bold for headline figures)."""
    r = f"{ratio:.2f}"
    return f"{n(a, digits)} / {n(b, digits)} = {f'**{r}**' if bold else r}"


def pred_vs_meas(pm: dict[str, float] | None, digits: int = 0) -> str:
    """'predicted / measured = ratio' from ``{"predicted": .., "measured": ..}`` ('–' for None)."""
    if not pm:
        return "–"
    return vs(pm["predicted"], pm["measured"], pm["predicted"] / pm["measured"], digits)


def load_span(rec: dict) -> str:
    """'1.2→3.4': the 1-minute load before and after a measured point."""
    return f"{la(rec.get('load_before'))}→{la(rec.get('load_after'))}"


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def not_run(name: str) -> list[str]:
    return [f"_not run yet: `python bench/run_all.py --only {name}`_", ""]


def section(name: str, title: str) -> Callable[[Callable[[dict], list[str]]], Section]:
    """A report section from a function of one benchmark's JSON: the header, then its body, or a
    'not run yet' line when the JSON is missing."""

    def wrap(body: Callable[[dict], list[str]]) -> Section:
        def render(results: Path) -> list[str]:
            d = _load(results, name)
            return [f"## {title}", "", *(body(d) if d else not_run(name))]

        render.__name__ = body.__name__
        return render

    return wrap


@section("proxy_vs_direct", "Proxy vs direct")
def proxy_vs_direct(d: dict) -> list[str]:
    return pvd_tables(d, "results/proxy_vs_direct.png")


def scale_section(results: Path) -> list[str]:
    """`make bench-scale`: proxy vs direct at 100k-1M rows (results/scale/), same tables."""
    d = _load(results / capacity.SCALE_DIR, "proxy_vs_direct")
    out = ["## Proxy vs direct at scale (`make bench-scale`)", ""]
    if not d:
        return out + ["_not run yet: `make bench-scale` (about 2 hours here)_", ""]
    out += ["The issue's sizes, outside the 30-minute `make bench`: the same benchmark (same data generator, "
            "index parameters, queries and interleaving) at 100k rows and more, run by `make bench-scale` "
            "into `bench/results/scale/`. Its rows also feed the capacity model below.", ""]
    out += [f"- {note}" for note in d.get("notes", [])] + ([""] if d.get("notes") else [])
    return out + pvd_tables(d, f"results/{capacity.SCALE_DIR}/proxy_vs_direct.png")


def pvd_tables(d: dict, png: str) -> list[str]:
    out: list[str] = []
    s = d["setup"]
    out += [f"Proxy over {s['nodes_behind_proxy']} nodes vs one node holding everything, same run, same data, "
            f"dim {s['dim']}, L2, k=10; index parameters {s['params']}; {loads(d)}. "
            "Ratio = proxy / direct (insert and QPS: higher is better; latency: lower is better).", ""]
    for inv in d.get("invocations", []):  # runs merged from several invocations: each listed with its load
        out += [f"- invocation {inv['n']}: `{inv['argv']}`, load {la(inv.get('load_before'))} → {la(inv.get('load_after'))}"]
    for note in d.get("skipped", []):
        out += [f"- skipped: {note}"]
    out += [""]
    rows = []
    for r in d["runs"]:
        D, P, R = r["direct"], r["proxy"], r["ratios"]
        rows.append([r["engine"], r["index"], n(r["rows"]),
                     vs(D["insert_rows_per_s"], P["insert_rows_per_s"], R["insert_throughput_proxy_over_direct"], bold=True),
                     vs(D["search_p50_ms"], P["search_p50_ms"], R["search_p50_proxy_over_direct"], 1, bold=True),
                     vs(D["search_p99_ms"], P["search_p99_ms"], R["search_p99_proxy_over_direct"], 1),
                     vs(D["batch_qps_nq100"], P["batch_qps_nq100"], R["batch_search_throughput_proxy_over_direct"], bold=True),
                     f"{D['recall_at_10']:.3f} / {P['recall_at_10']:.3f}",
                     f"{n(D['index_wait_s'])} / {n(P['index_wait_s'])}",
                     f"{n(D['rss_bytes'] / 2**20)} / {n(P['rss_bytes'] / 2**20)}",
                     load_span(r)])
    out += table(["engine", "index", "rows", "insert rows/s direct / proxy = ratio", "p50 ms (nq=1)", "p99 ms",
                  "QPS at nq=100", "recall@10", "index wait s", "RSS MiB (1 node / 3 nodes)", "load"], rows)
    out += [f"![proxy vs direct]({png})", ""] + latency_breakdown(d)
    return out


def latency_breakdown(d: dict) -> list[str]:
    """Where the proxy's extra nq=1 latency goes: the fan-out itself (the client searching the 3
    nodes at once, no proxy) vs the proxy's hop, with the CPU each process spent per search."""
    runs = [r for r in d["runs"] if "fanout" in r]
    if not runs:
        return []
    out = ["Where the proxy's extra nq=1 time goes (same interleaved loop as the table above): **fan-out** is the "
           "client searching the 3 nodes behind the proxy at once from 3 threads, no proxy (what a zero-cost proxy "
           "would reach on this machine); the proxy's own hop is proxy − fan-out. CPU per search from the processes' "
           "CPU time over the loop (the 3 nodes served the proxy's and the fan-out's searches: their CPU / 2n).", ""]
    rows = []
    for r in runs:
        D, P, F = r["direct"], r["proxy"], r["fanout"]
        rows.append([r["engine"], r["index"], n(r["rows"]), n(D["search_p50_ms"], 1),
                     f"{n(F['search_p50_ms'], 1)} ({F['search_p50_ms'] / D['search_p50_ms']:.2f}×)",
                     f"{n(P['search_p50_ms'], 1)} ({P['search_p50_ms'] / D['search_p50_ms']:.2f}×)",
                     n(P["search_p50_ms"] - F["search_p50_ms"], 1),
                     n(P.get("proxy_cpu_ms_per_search_nq1", float("nan")), 2),
                     f"{n(D.get('node_cpu_ms_per_search_nq1', float('nan')), 2)} / {n(P.get('node_cpu_ms_per_search_nq1', float('nan')), 2)}",
                     load_span(r)])
    out += table(["engine", "index", "rows", "p50 ms direct", "p50 ms fan-out, no proxy (× direct)", "p50 ms proxy (× direct)",
                  "proxy hop ms (proxy − fan-out)", "proxy CPU ms/search", "node CPU ms/search (1 node / 3 nodes)", "load"], rows)
    return out


@section("merge_cpu", "Merge CPU per query vs shards")
def merge_cpu(d: dict) -> list[str]:
    out: list[str] = []
    out += [f"`merge.merge_search_results` on simulated shard lists (each shard its k best, one int64 output "
            f"field); baseline: the same call on ONE shard's list, same run; {loads(d)}.", ""]
    gen = all("general_us_per_query" in p for p in d["points"])
    if gen:
        out += ["General path: the same merge with the general Hit-by-Hit ranking (`fast=False`, the merge before "
                "its fast path), same run: the before/after of the fast path.", ""]
    rows = [[p["nq"], p["k"], p["shards"], n(p["merge_us_per_query"], 1), n(p["one_shard_us_per_query"], 1),
             f"{p['ratio_to_one_shard']:.1f}", n(p["numpy_topk_us_per_query"], 2)]
            + ([n(p["general_us_per_query"], 1), f"{p['speedup_over_general']:.1f}"] if gen else []) for p in d["points"]]
    out += table(["nq", "k", "shards", "merge µs/query", "one shard µs/query", "ratio", "numpy top-k floor µs/query"]
                 + (["general path µs/query", "speedup"] if gen else []), rows)
    return out + ["![merge cpu](results/merge_cpu.png)", ""]


@section("shards", "Latency and recall vs number of shards")
def shards(d: dict) -> list[str]:
    out: list[str] = []
    s = d["setup"]
    out += [f"{n(s['rows'])} rows total, {s['index']}, {s['engine']}, nq=1 k=10, {s['queries']} queries; baseline: "
            f"one direct node with the same rows, interleaved query by query; recall vs exact search; {loads(d)}.", ""]
    rows = [[p["shards"], vs(p["proxy_p50_ms"], p["direct_p50_ms"], p["p50_ratio_to_direct"], 1, bold=True),
             vs(p["proxy_p99_ms"], p["direct_p99_ms"], p["p99_ratio_to_direct"], 1),
             f"{p['recall_at_10']:.3f} (direct {p['direct_recall_at_10']:.3f})", load_span(p)]
            for p in d["points"]]
    out += table(["shards", "p50 ms proxy / direct = ratio", "p99 ms", "recall@10", "load"], rows)
    return out + ["![shards](results/shards.png)", ""]


@section("concurrency", "Concurrency")
def concurrency(d: dict) -> list[str]:
    out: list[str] = []
    s = d["setup"]
    out += [f"{n(s['rows'])} rows, {s['index']}, {s['engine']}, 3 nodes, nq=1 k=10, {s['seconds_per_point']} s per point; "
            f"baseline: the same client threads straight to one node with the same rows; {loads(d)}. "
            "(Anchor: the Mishards report that broke at 5 client threads.)", ""]
    rows = [[p["clients"], p["target"], n(p["qps"], 1), f"{p['qps_ratio_to_direct']:.2f}", n(p["p50_ms"], 1),
             n(p["p99_ms"], 1), f"{p['p99_ratio_to_direct']:.2f}", p["errors"], load_span(p)]
            for p in d["points"]]
    out += table(["clients", "target", "QPS", "QPS / direct", "p50 ms", "p99 ms", "p99 / direct", "errors", "load"], rows)
    return out + ["![concurrency](results/concurrency.png)", ""]


@section("rebalance", "Rebalance")
def rebalance(d: dict) -> list[str]:
    out: list[str] = []
    out += [f"Moved fraction from the ring (exact arc shares); {loads(d)}.", ""]
    out += table(["N", "ideal 1/N", "add moved", "ratio", "drain moved", "ratio"],
                 [[m["n"], f"{m['ideal']:.3f}", f"{m['add_moved']:.3f}", f"{m['add_ratio']:.2f}", f"{m['drain_moved']:.3f}",
                   f"{m['drain_ratio']:.2f}"] for m in d["moved_fraction"]])
    c = d.get("cluster")
    if c:
        a, dr, b, du = c["add_without_load"], c["drain_with_load"], c["search_ms_before"], c["search_ms_during_move"]
        out += [f"Real cluster ({c.get('engine', 'milvus-lite')}): {n(c['rows'])} rows, dim {c['dim']}, 3 nodes + 1 spare.", ""]
        out += table(["", "value", "baseline (same run)", "ratio"], [
            ["add node, no load: rows/s moved", n(a["rows_per_s"]), "", ""],
            ["add node: moved fraction", f"{a['moved_fraction']:.3f}", "ideal 0.250", f"{a['ratio_to_ideal']:.2f}"],
            ["drain, with inserts + searches: rows/s moved", n(dr["rows_per_s"]), f"{n(a['rows_per_s'])} (no load)",
             f"{dr['rows_per_s'] / a['rows_per_s']:.2f}" if a["rows_per_s"] else "–"],
            ["search p50 ms during the move", n(du["p50"], 1), f"{n(b['p50'], 1)} (no move)", f"{du['p50'] / b['p50']:.2f}"],
            ["search p99 ms during the move", n(du["p99"], 1), f"{n(b['p99'], 1)} (no move)", f"{du['p99'] / b['p99']:.2f}"],
        ])
    return out + ["![rebalance](results/rebalance.png)", ""]


@section("pipeline", "Image pipeline")
def pipeline(d: dict) -> list[str]:
    out: list[str] = []
    ls, le = d.get("load_average_at_start"), d.get("load_average_at_end")
    out += [f"{d['images']} catalog images, batch {d['batch_size']}, {d['torch_threads']} torch threads; baseline: raw model "
            f"forward at the same batch, same run; load {ls[0] if ls else '?':.1f} → {le[0] if le else '?':.1f} on "
            f"{d['cpu_count']} cores.", ""]
    out += table(["stage", "images/s", "ratio to raw forward"], [
        ["raw forward (backbone + projection)", n(d["raw_forward_images_per_s"], 1), "1.00"],
        ["pipeline (queue → decode → embed → upsert → ack)", n(d["pipeline_images_per_s"], 1), f"**{d['pipeline_vs_raw']:.2f}**"],
        *([[f"pipeline, model forwards/s ({d['forwards_per_image']} per catalog image: itself + "
            f"{d['catalog_views']} prototype views)", n(d["pipeline_forwards_per_s"], 1), f"{d['pipeline_forwards_vs_raw']:.2f}"]]
          if d.get("catalog_views") else []),
    ])
    q = d["query_latency"]
    # one stage table per query configuration (pipeline.py measures each it can run), or one flat table
    per_config = {"": q} if "total" in q else q
    out += table(["query configuration", "query stage", "mean ms", "p50 ms", "p95 ms", "share of total"],
                 [[cfg, k, n(v["mean_ms"], 1), n(v["p50_ms"], 1), n(v["p95_ms"], 1), f"{v['mean_ms'] / st['total']['mean_ms']:.2f}"]
                  for cfg, st in per_config.items() for k, v in st.items() if isinstance(v, dict)])
    objs = {cfg: st["objects_per_photo"] for cfg, st in per_config.items() if "objects_per_photo" in st}
    out += [f"Objects searched per photo: {', '.join(f'{c} {v:.1f}' for c, v in objs.items())}.", ""] if objs else []
    return out + ["![pipeline](results/pipeline.png)", ""]


def capacity_section(results: Path) -> list[str]:
    out = ["## Capacity model", "",
           "`bench/capacity.py` fits per-node constants from the tables above (memory per vector from node RSS, CPU "
           "per query from the node processes' CPU time in nq=100 batches, latency from nq=1 p50, tail from proxy p99/p50, QPS per proxy from the "
           "concurrency run, images/s per worker from the pipeline run). With three or more sizes the largest is "
           "held out of the fit and predicted.", ""]
    try:
        d = capacity.proxy_vs_direct_runs(results)
    except capacity.NotMeasured:
        return out + not_run("proxy_vs_direct")
    combos = sorted({(r["engine"], r["index"]) for r in d["runs"]})
    rows, preds = [], []
    for engine, index in combos:
        try:
            checks = capacity.check_against_measurements(results, engine, index)
            c = capacity.constants_from_results(results, engine, index)
        except capacity.NotMeasured as exc:
            out += [f"- {engine} {index}: {exc}"]
            continue
        for ch in checks:
            rows.append([engine, index, n(ch["rows"]), ch["kind"], pred_vs_meas(ch["rss_mib"]),
                         pred_vs_meas(ch["node_cpu_ms_per_query"], 2), pred_vs_meas(ch["search_p50_ms"], 1)])
        for images in (30_000_000, 300_000_000):
            t = capacity.Target(images=images, index=index, replicas=2, qps=100, p99_ms=200, node_memory_gib=64, node_cores=16)
            try:
                p = capacity.plan(c, t)
            except ValueError as exc:  # e.g. a memory fit with no positive slope at tiny sizes
                preds.append([engine, index, f"{images / 1e6:.0f}M", n(c.memory.slope), f"{c.search_cpu_s.b:.2f}",
                              *["–"] * 8, f"no plan: {exc}"])
                continue
            preds.append([engine, index, f"{images / 1e6:.0f}M", n(c.memory.slope), f"{c.search_cpu_s.b:.2f}",
                          p.nodes, f"{p.nodes_for_memory} / {p.nodes_for_qps or 'unreachable'} / {p.nodes_for_p99 or 'unreachable'}",
                          n(p.memory_per_node_gib, 1), n(p.qps_capacity), n(p.p99_ms), p.proxies, p.workers, n(p.import_hours, 1),
                          "; ".join(p.notes)])
    out += ["Predicted vs measured (predicted / measured = ratio) for the direct node holding every row and for the "
            "3 nodes behind the proxy (predicted as 3 nodes of rows/3 each: RSS summed, node CPU per query summed):", ""]
    out += table(["engine", "index", "rows", "kind", "RSS MiB", "node CPU ms/query (nq=100)", "p50 ms (nq=1)"], rows)
    out += ["Predictions: R=2, target 100 QPS and p99 ≤ 200 ms, nodes of 64 GiB (70% usable) and 16 cores at 60% "
            "CPU, import within 24 h, one vector per image (256-d). The search exponent b is the fitted growth of "
            "per-query CPU with rows per node; when it is measured over small sizes only, the extrapolation to "
            "tens of millions per node is the model's weakest part.", ""]
    out += table(["engine", "index", "images", "bytes/vector", "cpu ~ n^b", "nodes", "for memory / QPS / p99",
                  "GiB per node", "QPS capacity", "p99 ms", "proxies", "workers", "import h", "notes"], preds)
    return out


@section("ring_sim", "Ring simulation")
def ring(d: dict) -> list[str]:
    out: list[str] = []
    ch = d["choice"]
    out += [f"uhashring ketama continuum, exact arc shares (no sampling noise); replicas R={d['points'][0]['replicas']}; "
            f"{loads(d)}. Chosen default vnodes: the smallest count with imbalance ≤ {ch['max_imbalance']} for every "
            f"cluster up to {ch['up_to_nodes']} nodes: **{ch['vnodes']}** (shardproxy.ring.DEFAULT_VNODES is "
            f"{d['current_default_vnodes']}).", ""]
    nodes = sorted({p["nodes"] for p in d["points"]})
    vn = sorted({p["vnodes"] for p in d["points"]})
    by = {(p["nodes"], p["vnodes"], p["weighted"]): p for p in d["points"]}
    out += ["Load imbalance (max node share / its weight share; 1.00 is perfect), unweighted | weighted 1:2:", ""]
    out += table(["vnodes \\ nodes", *map(str, nodes)],
                 [[v, *[f"{by[(k, v, False)]['imbalance']:.2f} \\| {by[(k, v, True)]['imbalance']:.2f}" for k in nodes]] for v in vn])
    out += ["Moved fraction / ideal, add one node | remove one node (unweighted):", ""]
    out += table(["vnodes \\ nodes", *map(str, nodes)],
                 [[v, *[f"{by[(k, v, False)]['add_ratio']:.2f} \\| {by[(k, v, False)]['remove_ratio']:.2f}" for k in nodes]] for v in vn])
    distinct = all(p["replica_distinct"] for p in d["points"])
    out += [f"Replica placement: no two replicas of a key on one node in every simulated ring: **{distinct}**. "
            "Replica load max/mean (unweighted):", ""]
    out += table(["vnodes \\ nodes", *map(str, nodes)],
                 [[v, *[f"{by[(k, v, False)]['replica_load_max_over_mean']:.2f}" for k in nodes]] for v in vn])
    out += ["Lookup cost (`Ring.owner_index`: md5 per key + one searchsorted):", ""]
    out += table(["nodes", "vnodes", "ring points", "ring arrays KiB", "batch", "ms per batch", "µs per key", "peak KiB per batch"],
                 [[x["nodes"], x["vnodes"], n(x["ring_points"]), n(x["ring_array_bytes"] / 1024), n(x["batch"]),
                   n(x["seconds_per_batch"] * 1000, 2), n(x["us_per_key"], 2), n(x["peak_bytes_per_batch"] / 1024)]
                  for x in d["lookup"]])
    if d.get("ring_build"):
        out += ["Building the proxy's `Ring` (the ketama continuum computed with numpy, linear in points; same "
                "points and owners as uhashring, tests/unit/test_ring.py) against uhashring building the same ring "
                "in the same run (`insort` per point, quadratic):", ""]
        out += table(["nodes", "vnodes", "points", "Ring build s", "uhashring build s", "uhashring / Ring", "load 1m"],
                     [[b["nodes"], b["vnodes"], n(b["nodes"] * b["vnodes"] * 4), n(b["seconds"], 3),
                       "-" if b["uhashring_seconds"] is None else n(b["uhashring_seconds"], 2),
                       "-" if b["uhashring_seconds"] is None else n(b["uhashring_seconds"] / b["seconds"], 0),
                       n(b["load1"], 1)] for b in d["ring_build"]])
    return out + ["![ring](results/ring_sim.png)", ""]


SECTIONS: list[Section] = [proxy_vs_direct, scale_section, merge_cpu, shards, concurrency, rebalance, pipeline, capacity_section, ring]


def render(results: Path) -> str:
    meta = _load(results, "run_all") or {"steps": {}}
    out = ["# Benchmark report", "",
           "Generated by `make bench` (`bench/run_all.py`) from `bench/results/*.json`. Every figure is a ratio to a "
           "baseline measured in the same run, with the absolute numbers beside it; the machine load (1-minute load "
           "average) is recorded before and after every run. Shared 2-core machines: read a ratio together with its load.", ""]
    if "wall_s" in meta:
        out += [f"- One run of every part, scale `{meta.get('scale', '?')}`: {n(meta['wall_s'])} s "
                f"({meta['wall_s'] / 60:.1f} min) in all, {meta.get('started', {}).get('at', '?')} → "
                f"{meta.get('finished', {}).get('at', '?')}, load {la(meta.get('started'))} → {la(meta.get('finished'))} "
                f"on {meta.get('machine', {}).get('cpus', '?')} cores."]
    out += [f"- {note}" for note in meta.get("notes", [])] + ([""] if meta.get("notes") or "wall_s" in meta else [])
    if meta.get("steps"):
        out += table(["benchmark", "scale", "command", "rc", "wall s", "load before → after"],
                     [[k, s.get("scale", "?"), f"`{' '.join(s['argv'])}`", s["rc"], n(s["wall_s"]),
                       f"{la(s['load_before'])} → {la(s['load_after'])}"] for k, s in meta["steps"].items()])
    for sec in SECTIONS:
        try:
            out += sec(results)
        except (KeyError, TypeError, ZeroDivisionError, ValueError) as exc:  # a malformed/partial JSON: say so
            out += [f"_section {sec.__name__} could not be rendered: {exc!r}_", ""]
    return "\n".join(out) + "\n"


def write_report(results: Path, path: Path) -> Path:
    """Write the report to ``path``; its plot links point at ``results`` from there."""
    rel = os.path.relpath(results.resolve(), path.resolve().parent)
    path.write_text(render(results).replace("](results/", f"]({rel}/"))
    return path
