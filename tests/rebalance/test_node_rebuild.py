"""A node that was down past its hint bound comes back on its own (real processes: 3 milvus-lite
nodes, valkey, the proxy; R = 2, ``hint_max_keys`` = 10).

While node-1 is dead, deletes, upserts and inserts overflow its hints (deletes are acknowledged
without a tombstone for it past the bound). When it is restarted the proxy rebuilds its key
ranges from the other replicas (shardproxy/rebuild.py) before it serves reads again: it comes
back ``active`` with no operator, ``shardproxy verify`` is clean, deleted keys stay deleted on
every node, and every acknowledged row is readable with its latest value on both its replicas."""

from __future__ import annotations

import asyncio
import re
import subprocess
import urllib.request

import numpy as np
from pymilvus import MilvusClient, MilvusException
from shopbyimage.v1 import admin_pb2

from devkit import procs
from shardproxy.hints import HintStore
from shardproxy.metastore import MetaStore
from tests.helpers import eventually

from .conftest import COLLECTION, PY, admin, child_env, create_collection, node_pks, rows, use_redis, vectors
from .test_hung_node import copies_on_replicas, node_state, pending_hints, visible

HINT_MAX_KEYS = 10


def needs_repair(redis_url: str, node: str) -> str:
    async def run() -> str:
        store = MetaStore(redis_url)
        try:
            return await HintStore(store.r, store.prefix, 1, 3600).needs_repair(node)
        finally:
            await store.close()

    return asyncio.run(run())


def metric(port: int, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = 0.0
    for lab, v in re.findall(rf"^shardproxy_{name}\{{([^}}]*)\}} (\S+)", text, re.M):
        if all(f'{k}="{want}"' in lab for k, want in labels.items()):
            total += float(v)
    return total


def attempt(fn) -> bool:  # type: ignore[no-untyped-def]
    try:
        fn()
        return True
    except MilvusException:
        return False


def test_node_down_past_its_hint_bound_is_rebuilt_and_serves_again(make_cluster) -> None:
    port = procs.free_port()
    cluster = make_cluster(nodes=3, replicas=2, proxy_env={
        "SHARDPROXY_METRICS_PORT": str(port), "SHARDPROXY_HINT_MAX_KEYS": str(HINT_MAX_KEYS),
        "SHARDPROXY_REPAIR_INTERVAL_S": "0"})  # no background anti-entropy: only the rebuild may fix node-1
    use_redis(cluster.redis_url)
    create_collection(cluster.connect_kwargs()).close()
    client = cluster.client()
    ids = np.arange(1, 301, dtype=np.int64)
    client.insert(COLLECTION, rows(ids))
    stub = admin(cluster)

    cluster.milvus[1].kill()
    eventually(lambda: node_state(stub, "node-1") == admin_pb2.NODE_STATE_DOWN or 1 / 0, timeout=60,
               errors=ZeroDivisionError)
    deleted: set[int] = set()
    changed: set[int] = set()
    uncertain: set[int] = set()  # writes reported as failed: either version may be there
    for start in range(1, 61, 10):
        batch = list(range(start, start + 10))
        (deleted if attempt(lambda: client.delete(COLLECTION, ids=batch)) else uncertain).update(batch)
    # one row per request: a row with node-1 among its replicas fails under quorum once its
    # hints overflowed (no stand-in copy without a hint); the others are acknowledged
    for pk in range(100, 160):
        new = [{"id": pk, "vec": vectors(np.array([pk]))[0].tolist(), "tag": "v2"}]
        (changed if attempt(lambda: client.upsert(COLLECTION, new)) else uncertain).add(pk)
    inserted: set[int] = set()
    for pk in range(301, 401):
        (inserted if attempt(lambda: client.insert(COLLECTION, rows(np.array([pk])))) else uncertain).add(pk)
    assert needs_repair(cluster.redis_url, "node-1"), "the writes did not overflow node-1's hints"
    assert metric(port, "hints_refused_total", node="node-1") >= 1
    assert len(deleted) >= 30 and changed and inserted  # deletes are acknowledged past the bound

    cluster.restart_node(1)

    resurrected: set[int] = set()

    def back() -> None:
        # until it is rebuilt node-1 serves no reads: its old copies of deleted keys never show
        try:
            resurrected.update(visible(client, sorted(deleted)))
        except MilvusException:  # a read racing the node's state switch: only resurrection is checked here
            pass
        assert node_state(stub, "node-1") == admin_pb2.NODE_STATE_ACTIVE
        assert pending_hints(cluster.redis_url, [f"node-{i}" for i in range(3)]) == 0

    eventually(back, timeout=300, errors=AssertionError)
    assert not resurrected, f"deleted keys read back while node-1 came back: {sorted(resurrected)[:10]}"
    assert needs_repair(cluster.redis_url, "node-1") == ""
    assert metric(port, "repair_passes_total", result="rebuilt") >= 1
    assert metric(port, "repair_rows_total", action="deleted") >= 1  # acknowledged deletes node-1 missed
    assert metric(port, "repair_rows_total") >= 1 + metric(port, "repair_rows_total", action="deleted")

    out = subprocess.run([PY, "-m", "shardproxy", "verify", "--redis-url", cluster.redis_url],
                         capture_output=True, text=True, timeout=300, env=child_env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]

    expected = (set(ids.tolist()) | inserted) - deleted - uncertain
    assert visible(client, sorted(expected)) == expected
    assert not visible(client, sorted(deleted))
    for m in cluster.milvus:  # no copy of a deleted key anywhere, node-1 included
        assert not deleted & set(node_pks(m.address)), m.name
    copies_on_replicas(cluster, expected | (visible(client, sorted(uncertain))))
    latest = {r["id"]: r["tag"] for r in client.query(COLLECTION, filter=f"id in {sorted(changed)}", output_fields=["tag"])}
    assert latest == {pk: "v2" for pk in changed}
    for m in cluster.milvus:  # every copy (node-1's rebuilt ones too) holds the latest version
        node = MilvusClient(uri=f"http://{m.address}")
        tags = {r["id"]: r["tag"] for r in node.query(COLLECTION, filter=f"id in {sorted(changed)}", output_fields=["tag"])}
        node.close()
        assert set(tags.values()) <= {"v2"}, f"{m.name} holds stale versions: {tags}"
    client.close()
