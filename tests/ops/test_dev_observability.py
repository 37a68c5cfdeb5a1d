"""`dev up --observability`: a real Prometheus (Debian's package, installed when missing) scrapes
the dev cluster's processes with our alert rules loaded."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from devkit import syspkg
from devkit.cli import start_observability
from devkit.devcluster import DevCluster
from tests.helpers import eventually


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_prometheus_scrapes_the_dev_cluster_with_our_rules(tmp_path: Path) -> None:
    try:
        syspkg.prometheus()
    except syspkg.PackageUnavailable as exc:
        pytest.skip(f"no Prometheus: {exc}")
    cluster = DevCluster(data_dir=tmp_path / "c", nodes=1, metrics=True).start()
    prom = None
    try:
        endpoints = cluster.metrics_endpoints()
        assert set(endpoints) == {"proxy", "migrator"}
        prom = start_observability(cluster)
        base = f"http://{prom.address}"

        def proxy_up() -> dict:
            targets = get(base + "/api/v1/targets")["data"]["activeTargets"]
            proxy = next(t for t in targets if t["labels"]["job"] == "shardproxy")
            assert proxy["health"] == "up", proxy
            return proxy

        eventually(proxy_up, timeout=90)
        rules = [r["name"] for g in get(base + "/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        assert "RebalanceErrors" in rules and "EmbedWorkerDown" in rules

        def ring_epoch() -> float:
            res = get(base + "/api/v1/query?query=shardproxy_ring_epoch")["data"]["result"]
            assert res and float(res[0]["value"][1]) >= 1
            return float(res[0]["value"][1])

        eventually(ring_epoch, timeout=90)
    finally:
        if prom is not None:
            prom.stop()
        cluster.stop()
