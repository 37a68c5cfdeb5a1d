"""Ring simulation, 3 to 512 nodes (see bench/ringsim.py for the exact, arc-based method): load
imbalance, moved fraction per add/remove vs ideal, replica placement and replica load, lookup time
and memory per batch, for several vnode counts, unweighted and with mixed weights (every other node
weight 2). Chooses the default vnode count: the smallest whose worst imbalance up to --choose-up-to nodes
stays under --max-imbalance. Also times building the proxy's ``Ring`` (linear-time continuum) against uhashring building the same ring
(quadratic; timed up to --uhashring-up-to nodes). Writes bench/results/ring_sim.{json,png}.

    .venv/bin/python bench/ring_sim.py [--nodes 3,8,16,32,64,128,256,512] [--vnodes 10,40,80,160,320]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench import common, ringsim  # noqa: E402
from shardproxy.ring import DEFAULT_VNODES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="3,8,16,32,64,128,256,512")
    ap.add_argument("--vnodes", default="10,40,80,160,320")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--batches", default="1000,10000")
    ap.add_argument("--max-imbalance", type=float, default=1.10)
    ap.add_argument("--choose-up-to", type=int, default=128, help="nodes the vnode choice must serve")
    ap.add_argument("--build-nodes", default="8,32,128,512", help="node counts at which to time building the Ring")
    ap.add_argument("--uhashring-up-to", type=int, default=128, help="largest node count to time uhashring's own build at")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()
    nodes = [int(x) for x in args.nodes.split(",")]
    vnodes = [int(x) for x in args.vnodes.split(",")]
    res: dict = {"machine": common.machine(), "load_before": common.load(), "current_default_vnodes": DEFAULT_VNODES,
                 "points": [], "lookup": []}
    pts = []
    for v in vnodes:
        for n in nodes:
            for weighted in (False, True):
                t0 = time.perf_counter()
                p = ringsim.simulate_point(n, v, weighted=weighted, replicas=args.replicas)
                pts.append(p)
                res["points"].append(p.as_dict())
                print(f"vnodes={v:4d} nodes={n:4d} weighted={weighted!s:5}: imbalance {p.imbalance:.3f}, add {p.add_ratio:.2f}x ideal, "
                      f"remove {p.remove_ratio:.2f}x, replica load max/mean {p.replica_load_max_over_mean:.3f} "
                      f"({time.perf_counter() - t0:.1f}s)", flush=True)
    for v in vnodes:
        for n in (nodes[0], nodes[len(nodes) // 2], nodes[-1]):
            ring = ringsim.make_ring(n, v)
            for b in (int(x) for x in args.batches.split(",")):
                c = ringsim.lookup_cost(ring, b)
                res["lookup"].append({"nodes": n, "vnodes": v} | asdict(c))
    res["ring_build"] = []
    for n in (int(x) for x in args.build_nodes.split(",") if x):
        secs = ringsim.build_seconds(n, DEFAULT_VNODES)
        base = ringsim.uhashring_build_seconds(n, DEFAULT_VNODES) if n <= args.uhashring_up_to else None
        res["ring_build"].append({"nodes": n, "vnodes": DEFAULT_VNODES, "seconds": secs, "uhashring_seconds": base,
                                  "load1": common.load()["loadavg"][0]})
        print(f"Ring build, {n} nodes x {DEFAULT_VNODES} vnodes: {secs:.3f}s (uhashring: "
              f"{'-' if base is None else f'{base:.2f}s'})", flush=True)
    chosen = ringsim.choose_vnodes(pts, args.max_imbalance, args.choose_up_to)
    res["choice"] = {"max_imbalance": args.max_imbalance, "up_to_nodes": args.choose_up_to, "vnodes": chosen}
    res["load_after"] = common.load()
    common.write("ring_sim", res, args.out)
    plot(res, args.out / "ring_sim.png")
    print(f"chosen vnodes (imbalance <= {args.max_imbalance} up to {args.choose_up_to} nodes): {chosen}; wrote {args.out / 'ring_sim.json'}")


def plot(res: dict, path: Path) -> None:
    plt = common.plt()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    vn = sorted({p["vnodes"] for p in res["points"]})
    for v in vn:
        un = [p for p in res["points"] if p["vnodes"] == v and not p["weighted"]]
        w = [p for p in res["points"] if p["vnodes"] == v and p["weighted"]]
        xs = [p["nodes"] for p in un]
        axes[0].plot(xs, [p["imbalance"] for p in un], "o-", label=f"{v} vnodes")
        axes[0].plot([p["nodes"] for p in w], [p["imbalance"] for p in w], "x:", color=axes[0].lines[-1].get_color())
        axes[1].plot(xs, [p["add_ratio"] for p in un], "o-", label=f"add, {v}")
        axes[1].plot(xs, [p["remove_ratio"] for p in un], "s:", color=axes[1].lines[-1].get_color())
        axes[2].plot(xs, [p["replica_load_max_over_mean"] for p in un], "o-", label=f"{v} vnodes")
        lk = [x for x in res["lookup"] if x["vnodes"] == v and x["batch"] == max(y["batch"] for y in res["lookup"])]
        axes[3].plot([x["nodes"] for x in lk], [x["us_per_key"] for x in lk], "o-", label=f"{v} vnodes")
    axes[0].set_title("load imbalance max/mean (x: weighted 1:2)")
    axes[1].set_title("moved / ideal (o add, s remove)")
    axes[2].set_title(f"replica load max/mean (R={res['points'][0]['replicas']})")
    axes[3].set_title("lookup us per key (batch)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("nodes")
        ax.axhline(1.0, color="k", lw=0.6)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"consistent-hash ring (uhashring ketama), chosen default vnodes: {res['choice']['vnodes']}; "
                 f"load {res['load_before']['loadavg'][0]:.1f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
