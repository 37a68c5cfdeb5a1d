"""Render the Grafana dashboard's proxy panels from real metrics, without Grafana.

Starts a dev cluster (3 milvus-lite nodes, valkey, the proxy, /metrics on every process) and the
real Prometheus of ``shardproxy dev up --observability`` (the same code: ``devkit.cli.start_observability``,
Debian's ``prometheus`` package, installed when missing, the alert rules of
deploy/prometheus/alerts.yml loaded), scraping every second here, and drives four
phases of traffic through the proxy with pymilvus: an import (inserts + light search), search
only, one node killed (searches fail, writes partly fail), the node restarted. Then it evaluates
the dashboard's own PromQL (deploy/grafana/dashboards/shop-by-image.json) with Prometheus'
query_range API and draws the panels of the "Search and RPCs" and "Nodes" rows at their grid
positions, with the phases as annotations and the alerts that fired.

    make dashboard-preview          # = python scripts/dashboard_preview.py --out docs/img/dashboard-preview.png
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from devkit import procs  # noqa: E402
from devkit.cli import start_observability  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "shop-by-image.json"
DIM = 32


def http_json(url: str, params: dict[str, Any] | None = None) -> Any:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


class Traffic:
    def __init__(self, conn: dict) -> None:
        from pymilvus import MilvusClient

        self.client = MilvusClient(**conn, timeout=10)
        self.rng = np.random.default_rng(1)
        self.next_id = 0
        self.stop = threading.Event()
        self.client.create_collection("preview", dimension=DIM, metric_type="L2", auto_id=False)

    def insert(self, n: int) -> None:
        vecs = self.rng.random((n, DIM), dtype=np.float32)
        rows = [{"id": self.next_id + i, "vector": v.tolist()} for i, v in enumerate(vecs)]
        self.next_id += n
        try:
            self.client.insert("preview", rows)
        except Exception:  # noqa: BLE001 - a node down: the proxy reports partial failure
            pass

    def search(self) -> None:
        try:
            self.client.search("preview", data=[self.rng.random(DIM).tolist()], limit=10)
        except Exception:  # noqa: BLE001
            pass

    def run(self, seconds: float, insert_every: float | None, search_every: float) -> None:
        end = time.monotonic() + seconds
        next_insert = time.monotonic()
        while time.monotonic() < end:
            if insert_every is not None and time.monotonic() >= next_insert:
                self.insert(100)
                next_insert += insert_every
            self.search()
            time.sleep(search_every)


def wait_scraping(base: str, cluster: DevCluster, timeout: float = 120) -> None:
    """Until Prometheus has scraped the proxy once (``up == 1``): the phases start on a live series."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # 503 while Prometheus opens its TSDB
            res = http_json(base + "/api/v1/query", {"query": 'up{job="shardproxy"}'})["data"]["result"]
        except OSError:
            res = []
        if res and all(r["value"][1] == "1" for r in res):
            return
        time.sleep(0.5)
    raise RuntimeError(f"prometheus at {base} never scraped the proxy {cluster.metrics_endpoints()}")


def fill(expr: str, rate_interval: str, range_s: int) -> str:
    return (expr.replace("$__rate_interval", rate_interval).replace("$__range", f"{range_s}s")
            .replace('"$job"', '".*"'))


def legend(fmt: str, labels: dict[str, str]) -> str:
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out or ", ".join(f"{k}={v}" for k, v in labels.items())


def render(base: str, phases: list[tuple[str, float]], t0: float, t1: float, out: Path, alerts: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = json.loads(DASHBOARD.read_text())
    panels, keep = [], False
    for p in dash["panels"]:
        if p["type"] == "row":
            keep = p["title"].startswith(("Search", "Nodes"))
            continue
        if keep:
            panels.append(p)
    max_y = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    min_y = min(p["gridPos"]["y"] for p in panels)
    fig = plt.figure(figsize=(24, 1.0 + (max_y - min_y) * 0.42), facecolor="#111217")
    range_s = int(t1 - t0)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p in panels:
        g = p["gridPos"]
        left, width = g["x"] / 24 + 0.004, g["w"] / 24 - 0.008
        top = 1 - (g["y"] - min_y) / (max_y - min_y) * 0.93 - 0.035
        height = g["h"] / (max_y - min_y) * 0.93 - 0.045
        ax = fig.add_axes((left, top - height, width, height), facecolor="#181b1f")
        ax.set_title(p["title"], color="#ccccdc", fontsize=10, loc="left")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        unit = p["fieldConfig"]["defaults"].get("unit", "short")
        if p["type"] == "timeseries":
            n = 0
            for t in p["targets"]:
                res = http_json(base + "/api/v1/query_range", {
                    "query": fill(t["expr"], "4s", range_s), "start": t0, "end": t1, "step": 2})
                for series in res["data"]["result"]:
                    xs = [float(v[0]) - t0 for v in series["values"]]
                    ys = [float(v[1]) for v in series["values"]]
                    ys = [y if np.isfinite(y) else np.nan for y in ys]
                    ax.plot(xs, ys, lw=1.2, color=colors[n % len(colors)],
                            label=legend(t["legendFormat"], series["metric"]))
                    n += 1
            for name, at in phases:
                ax.axvline(at - t0, color="#ff9830", lw=0.8, ls="--")
                ax.text(at - t0, 1.0, " " + name, color="#ff9830", fontsize=6, va="top",
                        transform=ax.get_xaxis_transform())
            ax.set_xlim(0, t1 - t0)
            ax.set_xlabel("seconds", color="#8e8e8e", fontsize=7)
            ax.grid(color="#2c3235", lw=0.5)
            if unit == "percentunit":
                ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
            elif unit == "s":
                ax.set_ylabel("seconds", color="#8e8e8e", fontsize=7)
            if 0 < n <= 12:
                ax.legend(fontsize=6, loc="upper left", facecolor="#181b1f", labelcolor="#ccccdc",
                          ncol=2 if n > 4 else 1)
            elif n == 0:
                ax.text(0.5, 0.5, "no data", color="#8e8e8e", ha="center", transform=ax.transAxes)
            else:
                ax.text(0.01, 0.97, f"{n} series (legend omitted)", color="#8e8e8e", fontsize=7, va="top",
                        transform=ax.transAxes)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            items: list[tuple[str, float]] = []
            for t in p["targets"]:
                res = http_json(base + "/api/v1/query", {"query": fill(t["expr"], "4s", range_s), "time": t1})
                items += [(legend(t["legendFormat"], s["metric"]), float(s["value"][1])) for s in res["data"]["result"]]
            items.sort()
            mapping = p["fieldConfig"]["defaults"].get("mappings")
            for i, (name, value) in enumerate(items):
                y = 1 - (i + 1) / (len(items) + 1)
                if p["type"] == "bargauge":
                    ax.barh(y, value, height=0.8 / (len(items) + 1), color=colors[i % len(colors)])
                    ax.text(0.01, y + 0.06, f"{name}: {value:.1%}", color="#ccccdc", fontsize=8)
                    ax.set_xlim(0, 1)
                    ax.set_ylim(0, 1)
                    continue
                text, color = f"{value:g}", "#73bf69"
                if mapping:
                    opt = mapping[0]["options"].get(str(int(value)))
                    if opt:
                        text, color = opt["text"], {"red": "#f2495c", "green": "#73bf69"}[opt["color"]]
                elif value == 0:
                    color = "#8e8e8e"
                ax.text(0.05, y, name, color="#ccccdc", fontsize=9, va="center", transform=ax.transAxes)
                ax.text(0.95, y, text, color=color, fontsize=12, va="center", ha="right", weight="bold",
                        transform=ax.transAxes)
    fig.text(0.005, 0.995, "shop-by-image — proxy rows of deploy/grafana/dashboards/shop-by-image.json, "
             "queries evaluated by Prometheus on real metrics of a dev cluster (3 milvus-lite nodes, 1 proxy)"
             + ("   |   alerts fired: " + ", ".join(alerts) if alerts else ""),
             color="#ccccdc", fontsize=11, va="top")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70, facecolor=fig.get_facecolor())
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard-preview.png")
    ap.add_argument("--scale", type=float, default=1.0, help="phase length multiplier")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dash-preview-") as tmp:
        work = Path(tmp)
        cluster = DevCluster(data_dir=work / "cluster", nodes=3, metrics=True,
                             proxy_env={"PYTHONPATH": procs.project_pythonpath()})
        cluster.start()
        prom = None
        try:
            prom = start_observability(cluster, scrape_interval="1s")
            base = f"http://{prom.address}"
            wait_scraping(base, cluster)
            traffic = Traffic(cluster.connect_kwargs())
            s = args.scale
            phases: list[tuple[str, float]] = []
            t0 = time.time()
            time.sleep(5 * s)
            phases.append(("import", time.time()))
            traffic.run(45 * s, insert_every=0.2, search_every=0.2)
            phases.append(("search only", time.time()))
            traffic.run(30 * s, insert_every=None, search_every=0.03)
            phases.append(("node-2 killed", time.time()))
            cluster.milvus[2].kill()
            traffic.run(80 * s, insert_every=1.0, search_every=0.1)
            phases.append(("node-2 restarted", time.time()))
            cluster.restart_node(2)
            traffic.run(30 * s, insert_every=1.0, search_every=0.05)
            time.sleep(3)
            t1 = time.time()
            fired = http_json(base + "/api/v1/query", {"query": "ALERTS", "time": t1 - 30 * s - 5})
            alerts = sorted({f"{a['metric']['alertname']} ({a['metric']['alertstate']}"
                             + (f", {a['metric']['node']})" if "node" in a["metric"] else ")")
                             for a in fired["data"]["result"]})
            render(base, phases, t0, t1, args.out, alerts)
        finally:
            if prom is not None:
                prom.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
