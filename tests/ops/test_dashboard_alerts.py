"""The Grafana dashboard and the Prometheus alert rules only name metrics the code really exports,
follow Prometheus naming conventions, and are provisioned where compose mounts them."""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import embed.metrics  # noqa: F401 - registers the pipeline metrics
from shardproxy import metrics
from tests.ops.deployfiles import GRAFANA, PROM, compose, promql_metrics

DASHBOARD = GRAFANA / "dashboards" / "shop-by-image.json"
PROMETHEUS_BUILTINS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
OUR_PREFIXES = ("shardproxy_", "embed_", "shopbyimage_")
# every label our metrics may carry: bounded sets only (method and status names, node ids and states,
# pipeline stages, model identity). Never a collection name, an id, a URL or any other user value.
BOUNDED_LABELS = {"method", "code", "node", "state", "source", "target", "stage", "outcome",
                  "model_id", "embedder", "dim", "detector",
                  # fixed enumerations: verify finding kinds, auth results/reasons/privileges, audit actions
                  "kind", "result", "reason", "privilege", "action",
                  # rate-limit metrics per configured user (the user table, never a request-derived value)
                  "user"}


def exported() -> set[str]:
    return metrics.metric_names(REGISTRY)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    d = dashboard()
    out = [(p["title"], t["expr"]) for p in d["panels"] for t in p.get("targets", [])]
    for var in d["templating"]["list"]:
        q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.match(r"label_values\((\w+)", q)
        out.append((f"variable {var['name']}", m.group(1) if m else q))
    out += [(f"annotation {a['name']}", a["expr"]) for a in d["annotations"]["list"]]
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promql_extractor() -> None:
    assert promql_metrics('sum by (node, le) (rate(a_seconds_bucket{job=~"$job",x="y z"}[$__rate_interval]))') == {
        "a_seconds_bucket"}
    assert promql_metrics("max(a) > 100 and max(delta(b[15m])) > 0") == {"a", "b"}
    assert promql_metrics("x / ignoring(node) group_left sum(y)") == {"x", "y"}
    assert promql_metrics("changes(max(e)[2m:30s]) > 0 or vector(0) offset 5m") == {"e"}
    assert promql_metrics("histogram_quantile(0.99, rate(h_bucket[5m])) > 1e-9") == {"h_bucket"}
    assert promql_metrics("sum by (node) (rate(bogus_total[5m]))") == {"bogus_total"}
    assert promql_metrics('count by (model_id) (shopbyimage_model_info{dim="256"})') == {"shopbyimage_model_info"}


def test_dashboard_is_what_the_builder_writes() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert DASHBOARD.read_text() == mod.render(), "run: python deploy/grafana/build_dashboard.py"


def test_dashboard_queries_name_exported_metrics() -> None:
    names = exported()
    missing = []
    for where, expr in dashboard_exprs():
        found = promql_metrics(expr)
        assert found, f"{where}: no metric in {expr!r}"
        missing += [f"{where}: {m}" for m in sorted(found - names - PROMETHEUS_BUILTINS)]
    assert not missing, "metrics the code does not export:\n" + "\n".join(missing)


def test_alert_rules_name_exported_metrics() -> None:
    names = exported()
    missing = []
    for rule in alert_rules():
        found = promql_metrics(rule["expr"])
        assert found, rule["alert"]
        missing += [f"{rule['alert']}: {m}" for m in sorted(found - names - PROMETHEUS_BUILTINS)]
    assert not missing, "metrics the code does not export:\n" + "\n".join(missing)


def test_a_bogus_metric_would_be_caught() -> None:
    assert "shardproxy_rpcs_totl" not in exported()
    assert "shardproxy_rpcs_total" in exported() and "shardproxy_rpc_duration_seconds_bucket" in exported()


def test_dashboard_covers_what_ops_watch() -> None:
    text = json.dumps(dashboard())
    for metric in ("shardproxy_rpc_duration_seconds_bucket", "shardproxy_rpcs_total", "shardproxy_node_up",
                   "shardproxy_rows_routed_total", "shardproxy_migration_rows_remaining", "embed_queue_lag",
                   "embed_items_total", "shardproxy_partial_results_total", "shardproxy_node_timeouts_total",
                   "shardproxy_hedged_requests_total", "shardproxy_hedge_wins_total", "shardproxy_hints_written_total"):
        assert metric in text, metric
    titles = " ".join(p["title"] for p in dashboard()["panels"]).lower()
    for word in ("p50", "p99", "qps", "error", "node up", "balance", "rebalance", "queue", "throughput"):
        assert word in titles, word
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard()["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "prometheus" and p["targets"], p["title"]


def test_alert_rules_shape() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
    by_metric = {r["alert"]: promql_metrics(r["expr"]) for r in rules}
    # what the issue asks for: node down, partial results, import lag growing, error ratio
    assert any("shardproxy_node_up" in m for m in by_metric.values())
    assert any("shardproxy_partial_results_total" in m for m in by_metric.values())
    assert any("embed_queue_lag" in m for m in by_metric.values())
    assert any("shardproxy_rpcs_total" in m and "/" in r["expr"] for r, m in zip(rules, by_metric.values()))


def test_prometheus_and_grafana_provisioning_wired() -> None:
    services = compose()["services"]
    prom_mounts = services["prometheus"]["volumes"]
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    for rule_file in prom["rule_files"]:
        assert any(v.split(":")[1] == rule_file for v in prom_mounts), rule_file
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["uid"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "shop-by-image.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    graf_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert graf_mounts[path] == "../grafana/dashboards"
    assert graf_mounts["/etc/grafana/provisioning"] == "../grafana/provisioning"
    k8s_prom = yaml.safe_load((PROM / "prometheus-k8s.yml").read_text())
    assert k8s_prom["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"] == "pod"


@pytest.mark.parametrize("prefix", OUR_PREFIXES)
def test_metric_naming_conventions(prefix: str) -> None:
    families = [f for f in REGISTRY.collect() if f.name.startswith(prefix)]
    assert families
    for f in families:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", f.name), f.name
        assert f.documentation, f"{f.name} has no help text"
        if f.type == "histogram":
            assert f.name.endswith(("_seconds", "_size")), f"histogram {f.name}: unit in the name"
        if f.type == "counter":
            assert not f.name.endswith("_total")  # prometheus_client adds _total to the samples
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples)
        if f.type == "gauge":
            assert not f.name.endswith("_total"), f"gauge {f.name} looks like a counter"
        for s in f.samples:
            extra = set(s.labels) - BOUNDED_LABELS - {"le", "quantile"}
            assert not extra, f"{s.name}: unbounded label(s) {extra}"
    for collector in (metrics.RPCS, metrics.NODE_LATENCY, metrics.ROWS_ROUTED, metrics.MIGRATION_ROWS_MOVED):
        assert set(collector._labelnames) <= BOUNDED_LABELS  # noqa: SLF001


# ---------------------------------------------------------------- promtool (when installed)
def promtool() -> str:
    import os
    import shutil

    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus; or set PROMTOOL=/path)")
    return found


def _run(*args: str) -> str:
    import subprocess

    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_promtool_checks_rules_and_config() -> None:
    tool = promtool()
    _run(tool, "check", "rules", str(PROM / "alerts.yml"))
    _run(tool, "check", "config", "--syntax-only", str(PROM / "prometheus.yml"))


def test_promtool_alert_unit_tests() -> None:
    """deploy/prometheus/alerts_test.yml: node down, error ratio, partial results, import lag, stalled rebalance."""
    _run(promtool(), "test", "rules", str(PROM / "alerts_test.yml"))


def test_promtool_parses_every_dashboard_query(tmp_path: Any) -> None:
    """Each dashboard query, with Grafana's variables filled in, is valid PromQL."""
    tool = promtool()
    rules = []
    for i, (where, expr) in enumerate(dashboard_exprs()):
        if where.startswith("variable"):
            continue
        expr = (expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace('"$job"', '".*"'))
        assert "$" not in expr, f"{where}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(tool, "check", "rules", str(path))
