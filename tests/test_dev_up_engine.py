"""`shardproxy dev up --engine`: milvus-lite (default) or real Milvus standalone nodes (PyPI's
``milvus`` package). The real-Milvus run is slow (each standalone takes ~0.3 GiB and tens of
seconds to start); the argument checks are fast and start nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from devkit import procs
from devkit.devcluster import DevCluster
from tests.helpers import eventually, make_collection, make_rows
from tests.test_dev_up import children_of, start


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shardproxy", "dev", "up", "--engine", "postgres", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": procs.project_pythonpath()},
    )
    assert out.returncode == 2
    assert "unknown engine 'postgres'" in out.stdout + out.stderr
    assert not (tmp_path / "d").exists()


def test_data_dir_remembers_its_engine(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text(json.dumps({"redis_port": 1, "nodes": [], "engine": "milvus"}))
    cluster = DevCluster(data_dir=tmp_path, nodes=1)
    with pytest.raises(ValueError, match="holds milvus nodes, not milvus-lite"):
        cluster.start()
    assert cluster.milvus == [] and cluster.redis is None  # nothing was started
    with pytest.raises(ValueError, match="unknown engine"):
        DevCluster(data_dir=tmp_path / "x", engine="nope")._start_node("node-0", 1)


@pytest.mark.slow
def test_dev_up_with_real_milvus_nodes(tmp_path: Path) -> None:
    pytest.importorskip("milvus", reason="PyPI's milvus package is installed by `make test-slow`")
    port = procs.free_port()
    proc, ready = start(tmp_path / "dev", port, "--engine", "milvus", timeout=900)
    try:
        assert "(milvus)" in ready
        layout = json.loads((tmp_path / "dev" / "cluster.json").read_text())
        assert layout["engine"] == "milvus" and len(layout["nodes"]) == 2
        cmdlines = []
        for kid in children_of(proc.pid):
            cmdlines.append(Path(f"/proc/{kid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        assert sum("milvus-server" in c for c in cmdlines) == 2, cmdlines
        token = re.search(r"token (root:\S+?)[ ,]", ready).group(1)  # type: ignore[union-attr]  # auth is on
        client = MilvusClient(uri=f"http://127.0.0.1:{port}", token=token)
        make_collection(client, "real", 8, index="FLAT")
        rows = make_rows(500, 8, seed=5)
        client.insert("real", rows)
        client.flush("real")

        def all_there() -> None:  # real Milvus: visible after its consistency window
            assert client.query("real", filter="", output_fields=["count(*)"])[0]["count(*)"] == 500
            assert client.search("real", [rows[42]["vector"]], limit=1)[0][0]["id"] == 42

        eventually(all_there, timeout=120)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
