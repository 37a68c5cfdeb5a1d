"""Fixtures of the ops tests: one small dev cluster (real milvus-lite, valkey and proxy processes)
with the proxy's /metrics served on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit import procs
from devkit.devcluster import DevCluster


@pytest.fixture(scope="module")
def ops_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevCluster, int]]:
    """A 2-node dev cluster whose proxy serves /metrics; yields (cluster, metrics port)."""
    metrics_port = procs.free_port()
    cluster = DevCluster(
        data_dir=tmp_path_factory.mktemp("opscluster"), nodes=2,
        proxy_env={
            "SHARDPROXY_METRICS_PORT": str(metrics_port),
            "SHARDPROXY_LOG_JSON": "true",
            "SHARDPROXY_LOG_LEVEL": "DEBUG",
            "PYTHONPATH": procs.project_pythonpath(),
        },
    )
    cluster.start()
    try:
        yield cluster, metrics_port
    finally:
        cluster.stop()
