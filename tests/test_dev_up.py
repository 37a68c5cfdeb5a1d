"""`shardproxy dev up` as a user runs it: a foreground process that prints `ready`, stops every child
on SIGTERM, and brings the data back when restarted on the same data dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from shardproxy import procs
from tests.helpers import eventually, make_collection, make_rows


def start(data_dir: Path, port: int, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardproxy", "dev", "up", "--nodes", "2", "--port", str(port),
         "--data-dir", str(data_dir), "--no-worker", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": procs.project_pythonpath(), "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 120
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if "ready" in line and "proxy at" in line:
            return proc, line
    proc.kill()
    pytest.fail("dev up did not print ready:\n" + "".join(seen))


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_dev_up_ready_sigterm_and_restart(tmp_path: Path) -> None:
    port = procs.free_port()
    proc, ready = start(tmp_path / "dev", port)
    assert re.search(rf"proxy at 127\.0\.0\.1:{port}", ready)
    # auth is on: the ready line carries root's generated password and the pymilvus line
    token = re.search(r"token (root:\S+?)[ ,]", ready).group(1)  # type: ignore[union-attr]
    assert f'token="{token}"' in ready
    kids = children_of(proc.pid)
    assert len(kids) >= 4  # redis, 2 milvus nodes, proxy
    with pytest.raises(Exception):  # noqa: B017 - pymilvus wraps UNAUTHENTICATED at connect
        MilvusClient(uri=f"http://127.0.0.1:{port}")
    client = MilvusClient(uri=f"http://127.0.0.1:{port}", token=token)
    make_collection(client, "kept", 8, index="FLAT")
    rows = make_rows(500, 8, seed=5)
    client.insert("kept", rows)
    client.close()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    time.sleep(0.5)
    alive = [k for k in kids if Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().split()[2]]
    assert alive == [], "children survived SIGTERM"

    proc, ready = start(tmp_path / "dev", port, "--root-password", "chosen-pw-1")
    try:
        assert "token root:chosen-pw-1" in ready
        client = MilvusClient(uri=f"http://127.0.0.1:{port}", token="root:chosen-pw-1")
        # nodes come back released; the proxy loads them again
        hits = eventually(lambda: client.search("kept", [rows[42]["vector"]], limit=1))
        assert hits[0][0]["id"] == 42
        assert client.query("kept", filter="", output_fields=["count(*)"])[0]["count(*)"] == 500
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
