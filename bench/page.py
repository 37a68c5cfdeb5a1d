"""Page-to-results time (browser side) vs the gRPC SearchByImage time for the same photos, same run.

Needs a running dev cluster with an imported catalog and the page — `make demo` leaves one running
(its endpoints are in the dev profile). For each sample scene (catalog products pasted into a room,
`embed.scenes`), one search straight over gRPC and one through the page in headless Chromium
(Debian's, driven by Playwright), interleaved; browser time = upload + server + attributes lookup
(`window.lastSearch.ms`, measured by the page from the POST to the parsed JSON).

    python bench/page.py [--collection tuxpaint_demo] [--scenes 20] [--screenshot docs/img/page.png]
    python bench/page.py --synthetic 24     # its own 3-node dev cluster + worker + page, a synthetic catalog

Writes bench/out/page.json and bench/out/page.png, with the machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from devkit import syspkg  # noqa: E402
from shardproxy import devprofile  # noqa: E402
from shopbyimage.v1 import image_search_pb2 as pb  # noqa: E402
from shopbyimage.v1 import image_search_pb2_grpc as pb_grpc  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def make_scenes(proxy_uri: str, collection: str, n: int, out: Path, access: Any = None) -> list[tuple[Path, list[str]]]:
    from embed.imageio import read_image_file
    from embed.scenes import make_scene
    from embed.store import connect

    client = connect(proxy_uri, access)
    rows = client.query(collection, filter="object_index == 0", output_fields=["product_id", "image_path"], limit=1000)
    rows.sort(key=lambda r: r["product_id"])
    client.close()
    rng = np.random.default_rng(11)
    scenes = []
    for k in range(n):
        pick = [rows[i] for i in rng.choice(len(rows), size=2, replace=False)]
        sc = make_scene([(r["product_id"], read_image_file(r["image_path"])) for r in pick], seed=5000 + k)
        path = out / f"scene{k:02d}.jpg"
        path.write_bytes(sc.jpeg)
        scenes.append((path, list(sc.product_ids)))
    return scenes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", help="HOST:PORT (default: the running dev cluster)")
    ap.add_argument("--web", help="the page's URL (default: the running dev cluster's)")
    ap.add_argument("--collection", default="tuxpaint_demo")
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--screenshot", type=Path, help="save the page with the first scene's results here")
    ap.add_argument("--synthetic", type=int, default=0,
                    help="start a dev cluster and import this many synthetic products (tests/embed/synth.py) first")
    args = ap.parse_args()
    cluster = None
    if args.synthetic:
        cluster = synthetic_cluster(args.synthetic)
        args.collection = "synthetic"
    try:
        run(args, cluster)
    finally:
        if cluster is not None:
            cluster.stop()


def synthetic_cluster(n: int):  # type: ignore[no-untyped-def]
    """A 3-node dev cluster with a worker and the page, and ``n`` synthetic products imported (small
    catalog adaptation, as the tests do)."""
    import subprocess

    from devkit import procs
    from devkit.devcluster import DevCluster
    from tests.embed.synth import make_catalog

    work = Path(tempfile.mkdtemp(prefix="page-bench-"))
    env = {"EMBED_TRAIN_VIEWS": "2", "EMBED_TRAIN_STEPS": "30", "EMBED_CACHE_DIR": str(work / "cache")}
    cluster = DevCluster(data_dir=work / "cluster", nodes=3, with_worker=True, web_port=0)
    cluster.start()
    csv = make_catalog(work / "catalog", n)
    r = subprocess.run([sys.executable, "-m", "embed", "import", str(csv), "--collection", "synthetic", "--wait",
                        "--proxy", cluster.proxy_uri, "--redis-url", cluster.redis_url],
                       env={**os.environ, **env, **cluster.client_env(), "PYTHONPATH": procs.project_pythonpath()},
                       timeout=3600)
    if r.returncode != 0:
        cluster.stop()
        sys.exit("import failed")
    return cluster


def run(args: argparse.Namespace, cluster) -> None:  # type: ignore[no-untyped-def]
    prof = devprofile.read()
    proxy = args.proxy or (cluster.proxy_address if cluster else prof.proxy if prof else None)
    web = (args.web or (cluster.web_url if cluster else prof.web if prof else "")).rstrip("/")
    if not proxy or not web:
        sys.exit(f"no running dev cluster with the page ({devprofile.hint()}): run `make demo` first, "
                 "or pass --proxy and --web")
    from playwright.sync_api import sync_playwright

    chromium = syspkg.chromium()
    from embed.config import EmbedSettings
    from shardproxy.auth.client import channel

    # the token (and TLS files): the cluster's, else SHARDPROXY_TOKEN / EMBED_TOKEN or the dev profile's
    access = cluster.access() if cluster else EmbedSettings().access()
    stub = pb_grpc.ImageSearchStub(channel(proxy, access, options=[("grpc.max_send_message_length", 64 << 20)]))
    load_before = os.getloadavg()
    records = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        scenes = make_scenes(f"http://{proxy}", args.collection, args.scenes, Path(tmp), access)
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.set_default_timeout(300_000)
        page.goto(web + "/")
        page.wait_for_selector(f"#collection option[value='{args.collection}']", state="attached")
        page.select_option("#collection", args.collection)
        page.fill("#topk", str(args.top_k))
        # one warm-up search each way (model load on first use is not what we measure)
        stub.SearchByImage(pb.SearchByImageRequest(image=scenes[0][0].read_bytes(), collection=args.collection,
                                                   top_k=args.top_k), timeout=300)
        for k, (path, truth) in enumerate(scenes):
            data = path.read_bytes()
            order = ["grpc", "page"] if k % 2 == 0 else ["page", "grpc"]
            rec: dict[str, object] = {"scene": path.name, "truth": truth}
            for what in order:
                if what == "grpc":
                    t0 = time.perf_counter()
                    resp = stub.SearchByImage(pb.SearchByImageRequest(image=data, collection=args.collection,
                                                                      top_k=args.top_k), timeout=300)
                    rec["grpc_ms"] = 1000 * (time.perf_counter() - t0)
                    rec["server_ms"] = dict(resp.timings_ms)
                else:
                    page.evaluate("document.querySelector('#result').dataset.done = ''")
                    page.set_input_files("#file", str(path))
                    page.wait_for_selector("#result[data-done='1']")
                    last = page.evaluate("window.lastSearch")
                    rec["page_ms"] = last["ms"]
                    found = {m["product_id"] for o in last["response"]["objects"] for m in o["matches"][:1]}
                    rec["found_rank1"] = [t for t in truth if t in found]
                    if k == 0 and args.screenshot:  # after the timing: the match thumbnails are lazy
                        page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
                        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=120_000)
                        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(args.screenshot), full_page=True)
            records.append(rec)
            print(f"{path.name}: page {rec['page_ms']:.0f} ms, gRPC {rec['grpc_ms']:.0f} ms, "
                  f"rank-1 {rec['found_rank1']} of {truth}", flush=True)
        browser.close()
    page_ms = [float(r["page_ms"]) for r in records]
    grpc_ms = [float(r["grpc_ms"]) for r in records]
    summary = {
        "collection": args.collection, "synthetic_products": args.synthetic, "scenes": len(records), "top_k": args.top_k,
        "page_p50_ms": pct(page_ms, 50), "page_p95_ms": pct(page_ms, 95),
        "grpc_p50_ms": pct(grpc_ms, 50), "grpc_p95_ms": pct(grpc_ms, 95),
        "page_over_grpc_p50_ms": pct(page_ms, 50) - pct(grpc_ms, 50),
        "recall_at_1": sum(len(r["found_rank1"]) for r in records) / sum(len(r["truth"]) for r in records),
        "load_before": load_before, "load_after": os.getloadavg(), "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "page.json").write_text(json.dumps({"summary": summary, "records": records}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.boxplot([grpc_ms, page_ms], tick_labels=["gRPC SearchByImage", "page (browser)"], showfliers=True)
    ax.set_ylabel("ms per photo")
    ax.set_title(f"{len(records)} scenes, {args.collection}; load {load_before[0]:.1f} on {os.cpu_count()} cores")
    fig.tight_layout()
    fig.savefig(args.out / "page.png", dpi=110)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
