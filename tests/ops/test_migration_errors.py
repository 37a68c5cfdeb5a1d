"""shardproxy_migration_errors_total moves for real: a node receiving a move goes down mid-move, the
migrator's batches fail (counted, retried with backoff), the node comes back, the move finishes
with every row in place. The RebalanceErrors alert and the dashboard panel read this counter."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from shopbyimage.v1 import admin_pb2

from devkit import procs
from devkit.devcluster import DevCluster
from tests.helpers import eventually, make_collection, make_rows

ROWS = 3000


def counter(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_failed_batches_are_counted_and_retried(tmp_path: Path) -> None:
    cluster = DevCluster(data_dir=tmp_path / "c", nodes=2, spare=1,
                         proxy_env={"SHARDPROXY_MIGRATOR_AUTOSTART": "false", "PYTHONPATH": procs.project_pythonpath()})
    cluster.start()
    migrator = None
    try:
        client = cluster.client()
        make_collection(client, "moving", 8)
        rows = make_rows(ROWS, 8, seed=3)
        for i in range(0, ROWS, 1000):
            client.insert("moving", rows[i:i + 1000])
        spare = cluster.spare_nodes[0]
        cluster.admin().AddNode(admin_pb2.AddNodeRequest(address=spare.address, id=spare.name), timeout=60)
        port = procs.free_port()
        # a slow migrator (100 rows/s in batches of 50) so the target can go down mid-move
        migrator = subprocess.Popen(
            [sys.executable, "-m", "shardproxy", "rebalance", "run", "--redis-url", cluster.redis_url,
             "--batch", "50", "--max-rows-per-s", "100", "--metrics-port", str(port)],
            stdout=open(tmp_path / "migrator.log", "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": procs.project_pythonpath()})

        def moved() -> float:
            v = counter(port, "shardproxy_migration_rows_moved_total")
            assert v >= 100
            return v

        eventually(moved, timeout=120)
        assert counter(port, "shardproxy_migration_errors_total") == 0
        # the other rebalance panels' series, mid-move
        assert counter(port, "shardproxy_migration_active") == 1
        planned = counter(port, "shardproxy_migration_rows_planned")
        assert planned > 0 and 0 < counter(port, "shardproxy_migration_rows_remaining") < planned
        assert counter(port, "shardproxy_migration_batch_duration_seconds_count") >= 1
        spare.kill()  # the node receiving rows dies

        def errors() -> float:
            v = counter(port, "shardproxy_migration_errors_total")
            assert v >= 1
            return v

        eventually(errors, timeout=120)
        assert migrator.poll() is None, "the migrator gave up instead of retrying"
        cluster.restart_node(len(cluster.milvus) - 1)
        assert migrator.wait(300) == 0, (tmp_path / "migrator.log").read_text()[-3000:]
        status = cluster.admin().RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
        assert not status.active and status.rows_moved == status.rows_to_move > 0

        def all_rows() -> int:
            n = client.query("moving", filter="", output_fields=["count(*)"])[0]["count(*)"]
            assert n == ROWS
            return n

        eventually(all_rows, timeout=60)
        hits = client.search("moving", [rows[1234]["vector"]], limit=1)
        assert hits[0][0]["id"] == 1234
        client.close()
    finally:
        if migrator is not None and migrator.poll() is None:
            migrator.kill()
            migrator.wait(10)
        cluster.stop()
