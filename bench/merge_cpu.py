"""The proxy's own merge cost: CPU time per query of ``merge.merge_search_results`` vs the number of
shards (2..64) and k, on simulated per-shard result lists (each shard returns its k best, random
scores, distinct int primary keys, an int64 output field). Same run baselines: the merge of ONE
shard's list (what a 1-node pass-through costs) and a numpy top-k over the same candidates (the
arithmetic floor); and the same merge with the general Hit-by-Hit ranking (``fast=False``: the
merge before its fast path, for a before/after in the same run). Pure CPU, no servers. Writes bench/results/merge_cpu.{json,png}.

    .venv/bin/python bench/merge_cpu.py [--shards 2,4,8,16,32,64] [--ks 10,100] [--nq 1,10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from pymilvus.grpc_gen import schema_pb2  # noqa: E402

from bench import common  # noqa: E402
from shardproxy import merge  # noqa: E402


def shard_result(rng: np.random.Generator, shard: int, nq: int, k: int) -> schema_pb2.SearchResultData:
    scores = np.sort(rng.random((nq, k)).astype(np.float32), axis=1).ravel()
    pks = (np.arange(nq * k) * 64 + shard).tolist()
    col = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="price")
    col.scalars.long_data.data.extend(pks)
    out = schema_pb2.SearchResultData(num_queries=nq, top_k=k, scores=scores.tolist(), topks=[k] * nq,
                                      primary_field_name="id", output_fields=["price"])
    out.ids.int_id.data.extend(pks)
    out.fields_data.append(col)
    return out


def cpu_per_query(fn, nq: int, min_s: float) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds per query: repeat ``fn`` until ``min_s`` of process time passed."""
    fn()
    n, t0 = 0, time.process_time()
    while True:
        fn()
        n += 1
        el = time.process_time() - t0
        if el >= min_s:
            return el / n / nq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", default="2,4,8,16,32,64")
    ap.add_argument("--ks", default="10,100")
    ap.add_argument("--nq", default="1,10")
    ap.add_argument("--min-s", type=float, default=0.3, help="CPU seconds per measured point")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    res: dict = {"machine": common.machine(), "load_before": common.load(), "points": []}
    for nq in (int(x) for x in args.nq.split(",")):
        for k in (int(x) for x in args.ks.split(",")):
            one = [shard_result(rng, 0, nq, k)]
            base = cpu_per_query(lambda: merge.merge_search_results(one, nq, "L2", 0, k), nq, args.min_s)
            for s in (int(x) for x in args.shards.split(",")):
                parts = [shard_result(rng, i, nq, k) for i in range(s)]
                t = cpu_per_query(lambda: merge.merge_search_results(parts, nq, "L2", 0, k), nq, args.min_s)
                # before/after in the same run: the general Hit-by-Hit ranking (the merge before the fast path)
                t_gen = cpu_per_query(lambda: merge.merge_search_results(parts, nq, "L2", 0, k, fast=False), nq, args.min_s)
                cand = np.array([list(p.scores) for p in parts], dtype=np.float32).reshape(s, nq, k)
                cand = cand.transpose(1, 0, 2).reshape(nq, s * k)
                floor = cpu_per_query(lambda: np.argpartition(cand, k - 1, axis=1)[:, :k], nq, args.min_s / 3)
                p = {"nq": nq, "k": k, "shards": s, "merge_us_per_query": t * 1e6, "one_shard_us_per_query": base * 1e6,
                     "numpy_topk_us_per_query": floor * 1e6, "ratio_to_one_shard": t / base, "ratio_to_numpy_topk": t / floor,
                     "general_us_per_query": t_gen * 1e6, "speedup_over_general": t_gen / t}
                res["points"].append(p)
                print(f"nq={nq} k={k} shards={s}: {t * 1e6:8.1f} us/query ({t / base:.1f}x one shard; general path {t_gen * 1e6:.1f})", flush=True)
    res["load_after"] = common.load()
    common.write("merge_cpu", res, args.out)
    plt = common.plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (nq, k) in sorted({(p["nq"], p["k"]) for p in res["points"]}):
        pts = [p for p in res["points"] if p["nq"] == nq and p["k"] == k]
        ax.plot([p["shards"] for p in pts], [p["merge_us_per_query"] for p in pts], "o-", label=f"k={k}, nq={nq}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("shards")
    ax.set_ylabel("merge CPU us per query")
    ax.set_title(f"proxy merge cost (load {res['load_before']['loadavg'][0]:.1f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "merge_cpu.png", dpi=110)
    print(f"wrote {args.out / 'merge_cpu.json'}")


if __name__ == "__main__":
    main()
