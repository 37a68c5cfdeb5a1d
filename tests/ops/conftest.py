"""Fixtures of the ops tests: one small dev cluster (real milvus-lite, valkey and proxy processes)
with the proxy's /metrics served on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shardproxy import procs
from shardproxy.devcluster import DevCluster

ROOT = Path(__file__).resolve().parents[2]


def child_pythonpath() -> str:
    """PYTHONPATH that makes this checkout importable by child processes (``-m shardproxy``)."""
    parts = [str(ROOT), str(ROOT / "gen")]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


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
            "PYTHONPATH": child_pythonpath(),
        },
    )
    cluster.start()
    try:
        yield cluster, metrics_port
    finally:
        cluster.stop()
