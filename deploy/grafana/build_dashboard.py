"""Builds deploy/grafana/dashboards/shop-by-image.json (run it after editing; a test checks the
committed JSON is what this script writes, and that every query names a metric the code exports).

    python deploy/grafana/build_dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "shop-by-image.json"
DS = {"type": "prometheus", "uid": "prometheus"}
RI = "$__rate_interval"
PROXY = 'job=~"$job"'


class Layout:
    def __init__(self) -> None:
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1
        self.panels: list[dict[str, Any]] = []

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += self.row_h
            self.x = 0
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1
        self.row_h = 0

    def panel(self, title: str, targets: list[tuple[str, str]], *, kind: str = "timeseries", unit: str = "short",
              w: int = 8, h: int = 8, description: str = "", stack: bool = False,
              extra: dict[str, Any] | None = None) -> None:
        if self.x + w > 24:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0
        p: dict[str, Any] = {
            "type": kind, "title": title, "id": self._id(), "datasource": DS, "description": description,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                 **({"format": "table", "instant": True} if kind == "table" else {})}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
        }
        if kind == "timeseries":
            p["fieldConfig"]["defaults"]["custom"] = {"fillOpacity": 10, "showPoints": "never",
                                                      **({"stacking": {"mode": "normal"}} if stack else {})}
            p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                            "tooltip": {"mode": "multi"}}
        elif kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background",
                            "graphMode": "none"}
        if extra:
            for k, v in extra.items():
                if isinstance(v, dict) and isinstance(p.get(k), dict):
                    p[k].update(v)
                else:
                    p[k] = v
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)


def up_down_mapping() -> dict[str, Any]:
    return {"fieldConfig": {"defaults": {
        "unit": "none",
        "mappings": [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                                     "1": {"text": "UP", "color": "green"}}}],
        "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                      {"color": "green", "value": 1}]},
    }, "overrides": []}}


def build() -> dict[str, Any]:
    L = Layout()
    srv_err = 'code=~"UNAVAILABLE|INTERNAL|UNKNOWN|DEADLINE_EXCEEDED|NODE_ERROR|DATA_LOSS|RESOURCE_EXHAUSTED"'

    L.row("Search and RPCs (proxies)")
    L.panel("QPS by method", [(f"sum by (method) (rate(shardproxy_rpcs_total{{{PROXY}}}[{RI}]))", "{{method}}")],
            unit="reqps", description="Milvus-protocol RPCs served by all proxies, per method.")
    L.panel("Search latency p50 / p99", [
        (f'histogram_quantile(0.5, sum by (le) (rate(shardproxy_rpc_duration_seconds_bucket{{{PROXY},method="Search"}}[{RI}])))', "p50"),
        (f'histogram_quantile(0.99, sum by (le) (rate(shardproxy_rpc_duration_seconds_bucket{{{PROXY},method="Search"}}[{RI}])))', "p99"),
        (f'histogram_quantile(0.99, sum by (le) (rate(shardproxy_merge_duration_seconds_bucket{{{PROXY}}}[{RI}])))', "merge p99"),
    ], unit="s", description="End-to-end Search latency at the proxy (fan-out + merge) and the merge alone.")
    L.panel("Insert / Upsert latency p99", [
        (f'histogram_quantile(0.99, sum by (le, method) (rate(shardproxy_rpc_duration_seconds_bucket{{{PROXY},method=~"Insert|Upsert|Delete"}}[{RI}])))', "{{method}} p99"),
    ], unit="s")
    L.panel("Error ratio (server-side)", [
        (f"sum(rate(shardproxy_rpcs_total{{{PROXY},{srv_err}}}[{RI}])) / clamp_min(sum(rate(shardproxy_rpcs_total{{{PROXY}}}[{RI}])), 1e-9)", "server errors"),
        (f'sum(rate(shardproxy_rpcs_total{{{PROXY},code!="OK"}}[{RI}])) / clamp_min(sum(rate(shardproxy_rpcs_total{{{PROXY}}}[{RI}])), 1e-9)', "all non-OK"),
    ], unit="percentunit", description="Alert ShardproxyErrorRatioHigh fires above 5% server-side errors for 5 minutes.")
    L.panel("Errors by code", [
        (f'sum by (method, code) (rate(shardproxy_rpcs_total{{{PROXY},code!="OK"}}[{RI}]))', "{{method}} {{code}}"),
    ], unit="reqps")
    L.panel("Partial results served", [
        (f"sum by (method) (rate(shardproxy_partial_results_total{{{PROXY}}}[{RI}]))", "{{method}}"),
    ], unit="reqps", description="Results served with a shard missing (node down, no replica). Should be 0.")

    L.row("Nodes: health, fan-out, balance")
    L.panel("Node up (any proxy reaches it)", [("max by (node) (shardproxy_node_up)", "{{node}}")],
            kind="stat", w=8, extra=up_down_mapping())
    L.panel("Nodes by state", [("max by (state) (shardproxy_nodes)", "{{state}}")], kind="stat", w=8,
            description="Registry states: active, joining (receiving data), draining (giving data away), drained, down, spare.")
    L.panel("Ring epoch / replication factor", [
        ("max(shardproxy_ring_epoch)", "ring epoch"),
        ("max(shardproxy_replication_factor)", "replication factor"),
    ], kind="stat", w=8, description="The ring epoch steps on every node add/drain/remove; all proxies should agree.")
    L.panel("Per-node Search latency p99", [
        (f'histogram_quantile(0.99, sum by (node, le) (rate(shardproxy_node_call_duration_seconds_bucket{{{PROXY},method="Search"}}[{RI}])))', "{{node}}"),
    ], unit="s", description="The slowest node sets the Search latency: fan-out waits for every shard.")
    L.panel("Per-node errors and timeouts", [
        (f"sum by (node) (rate(shardproxy_node_errors_total{{{PROXY}}}[{RI}]))", "{{node}} errors"),
        (f"sum by (node) (rate(shardproxy_node_timeouts_total{{{PROXY}}}[{RI}]))", "{{node}} timeouts"),
    ], unit="ops")
    L.panel("Rows written per node (rate)", [
        (f"sum by (node) (rate(shardproxy_rows_routed_total{{{PROXY}}}[{RI}]))", "{{node}}"),
    ], unit="rowsps", stack=True, description="Write balance: with equal weights every node gets about the same share.")
    L.panel("Row balance: share of rows written per node (dashboard range)", [
        (f"sum by (node) (increase(shardproxy_rows_routed_total{{{PROXY}}}[$__range])) / ignoring(node) group_left sum(increase(shardproxy_rows_routed_total{{{PROXY}}}[$__range]))", "{{node}}"),
    ], kind="bargauge", unit="percentunit", w=12,
        extra={"options": {"orientation": "horizontal", "reduceOptions": {"calcs": ["lastNotNull"]}}})
    L.panel("Node call rate by method", [
        (f"sum by (node, method) (rate(shardproxy_node_call_duration_seconds_count{{{PROXY}}}[{RI}]))", "{{node}} {{method}}"),
    ], unit="ops", w=12)

    L.row("Rebalance (migrator)")
    L.panel("Rebalance progress", [
        ("1 - max(shardproxy_migration_rows_remaining) / clamp_min(max(shardproxy_migration_rows_planned), 1)", "done"),
    ], kind="gauge", unit="percentunit", w=6,
        extra={"fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 1}}})
    L.panel("Rows remaining / planned", [
        ("max(shardproxy_migration_rows_remaining)", "remaining"),
        ("max(shardproxy_migration_rows_planned)", "planned"),
        ("max(shardproxy_migration_active)", "active"),
    ], w=6)
    L.panel("Rows moved per second (source → target)", [
        (f"sum by (source, target) (rate(shardproxy_migration_rows_moved_total[{RI}]))", "{{source}} → {{target}}"),
    ], unit="rowsps", w=6)
    L.panel("Migration batch time p99 / errors", [
        (f"histogram_quantile(0.99, sum by (le) (rate(shardproxy_migration_batch_duration_seconds_bucket[{RI}])))", "batch p99 (s)"),
        (f"sum(rate(shardproxy_migration_errors_total[{RI}]))", "errors/s"),
    ], w=6)

    L.row("Verify and repair (anti-entropy)")
    L.panel("Verify findings (last scan)", [
        ("max by (kind) (shardproxy_verify_findings)", "{{kind}}"),
        ("max(shardproxy_verify_unreachable_nodes)", "unreachable nodes"),
    ], w=6, description="missing / stray / differs / duplicate rows the last verify scan found; 0 everywhere is clean.")
    L.panel("Verify scan rate", [
        (f"sum(rate(shardproxy_verify_rows_scanned_total[{RI}]))", "rows/s"),
    ], unit="rowsps", w=6, description="Background repair scans at SHARDPROXY_REPAIR_ROWS_PER_S.")
    L.panel("Rows repaired per second", [
        (f"sum by (action) (rate(shardproxy_repair_rows_total[{RI}]))", "{{action}}"),
    ], unit="rowsps", w=6)
    L.panel("Repair passes / last pass", [
        (f"sum by (result) (increase(shardproxy_repair_passes_total[$__range]))", "{{result}}"),
        ("time() - max(shardproxy_repair_last_pass_timestamp_seconds)", "seconds since last pass"),
    ], w=6)

    L.row("Import queue (Redis Streams)")
    L.panel("Queue: length, waiting, in flight", [
        ("max(embed_queue_length)", "length (XLEN)"),
        ("max(embed_queue_lag)", "waiting for a worker (lag)"),
        ("max(embed_queue_pending)", "in flight (pending)"),
    ], w=8, description="Lag growing for 15 minutes fires ImportLagGrowing: add workers.")
    L.panel("Oldest in-flight entry age", [("max(embed_queue_oldest_pending_age_seconds)", "oldest pending")],
            unit="s", w=8)
    L.panel("Redeliveries and dead letters", [
        (f"sum(rate(embed_queue_redeliveries_total[{RI}]))", "redeliveries"),
        (f"sum by (stage) (rate(embed_queue_dead_letters_total[{RI}]))", "dead letters ({{stage}})"),
    ], unit="ops", w=8)

    L.row("Image pipeline (embedding workers)")
    L.panel("Throughput per stage", [
        (f'sum by (stage) (rate(embed_items_total{{outcome="ok"}}[{RI}]))', "{{stage}}"),
    ], unit="ops", w=8, description="decode: images; detect: images; embed: crops; write: rows written.")
    L.panel("Stage time per batch p95", [
        (f"histogram_quantile(0.95, sum by (stage, le) (rate(embed_stage_duration_seconds_bucket[{RI}])))", "{{stage}}"),
    ], unit="s", w=8)
    L.panel("Mean batch size per stage", [
        (f"sum by (stage) (rate(embed_batch_size_sum[{RI}])) / clamp_min(sum by (stage) (rate(embed_batch_size_count[{RI}])), 1e-9)", "{{stage}}"),
    ], w=8)
    L.panel("Failures per stage", [
        (f'sum by (stage) (rate(embed_items_total{{outcome="error"}}[{RI}]))', "{{stage}}"),
    ], unit="ops", w=12)
    L.panel("Model in use", [("count by (model_id, embedder, dim, detector) (shopbyimage_model_info)", "")],
            kind="table", w=12, description="One row per distinct model: more than one row means processes disagree.")

    return {
        "uid": "shop-by-image",
        "title": "shop-by-image",
        "description": "Sharded Milvus proxy, rebalancing and the image import pipeline",
        "tags": ["shop-by-image", "milvus"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "job", "label": "proxy job", "type": "query", "datasource": DS,
            "query": {"query": "label_values(shardproxy_rpcs_total, job)", "refId": "job"},
            "definition": "label_values(shardproxy_rpcs_total, job)",
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "refresh": 2,
        }]},
        "annotations": {"list": [{
            "name": "ring changes", "datasource": DS, "enable": True, "iconColor": "orange",
            "expr": "changes(max(shardproxy_ring_epoch)[2m:30s]) > 0", "step": "30s",
            "titleFormat": "ring epoch changed",
        }]},
        "panels": L.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    print(f"wrote {OUT}")
