"""The dashboard's "hints refused (needs repair)" series moves: with R=2 and one node dead, writes
for keys it replicates leave hints until the node's hint bound is reached; past it the proxy
refuses to record more (the node will need a repair) and counts ``shardproxy_hints_refused_total``.
Real processes: 3 milvus-lite nodes, valkey, the proxy with /metrics."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
from pymilvus import MilvusException

from tests.helpers import eventually

from .conftest import COLLECTION, create_collection, rows, use_redis

HINT_MAX_KEYS = 10


def scrape(port: int, name: str, node: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(rf'^shardproxy_{name}_total\{{node="{node}"\}} (\S+)', text, re.M))


def test_hints_past_their_bound_are_refused_and_counted(make_cluster) -> None:
    from devkit import procs

    port = procs.free_port()
    cluster = make_cluster(nodes=3, replicas=2, proxy_env={"SHARDPROXY_METRICS_PORT": str(port),
                                                           "SHARDPROXY_HINT_MAX_KEYS": str(HINT_MAX_KEYS)})
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    assert scrape(port, "hints_refused", "node-1") == 0
    cluster.milvus[1].kill()
    ids = np.arange(1, 301, dtype=np.int64)  # ~2/3 of the keys have node-1 among their two replicas
    for start in range(0, len(ids), 20):
        try:
            client.insert(COLLECTION, rows(ids[start : start + 20]))
        except MilvusException:  # a batch may fail while the proxy notices the dead node
            pass

    def moved() -> None:
        assert scrape(port, "hints_refused", "node-1") >= 1

    eventually(moved, timeout=60)
    # never more hints recorded than the bound allows
    assert scrape(port, "hints_written", "node-1") <= HINT_MAX_KEYS
    client.close()
