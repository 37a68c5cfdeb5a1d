"""A small cluster with auth on (the default): one milvus-lite node, Redis, proxy A (metrics on)
and, added later, proxy B (plain, for propagation) and proxy C (rate-limited)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit import procs
from devkit.devcluster import DevCluster


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    data = tmp_path_factory.mktemp("auth")
    metrics_port = procs.free_port()
    cluster = DevCluster(data_dir=data, nodes=1, proxy_env={"SHARDPROXY_METRICS_PORT": str(metrics_port)})
    cluster.metrics_port = metrics_port  # type: ignore[attr-defined]
    cluster.start()
    try:
        cluster.proxy_env = {}
        cluster.more_proxies.append(cluster._spawn_proxy(None, "proxy-b"))
        cluster.proxy_env = {"SHARDPROXY_RATE_LIMIT_RPS": "2", "SHARDPROXY_RATE_LIMIT_BURST": "3"}
        cluster.more_proxies.append(cluster._spawn_proxy(None, "proxy-c"))
        cluster.proxy_env = {}
        for p in cluster.more_proxies:
            cluster.wait_serving(p)
        yield cluster
    finally:
        cluster.stop()
