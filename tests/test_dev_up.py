"""`shardproxy dev up` as a user runs it: a foreground process that prints `ready`, stops every child
on SIGTERM, and brings the data back when restarted on the same data dir."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from devkit import procs
from shardproxy import devprofile
from tests.helpers import eventually, make_collection, make_rows


def start(data_dir: Path, port: int, *extra: str, timeout: float = 300) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardproxy", "dev", "up", "--nodes", "2", "--port", str(port),
         "--data-dir", str(data_dir), "--no-worker", "--web-port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": procs.project_pythonpath(), "COLUMNS": "200"},
    )
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if "endpoints recorded in" in line:  # printed last, once the dev profile is written
            return proc, next(x for x in seen if "ready" in x and "proxy at" in x)
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
    assert len(kids) >= 5  # redis, 2 milvus nodes, proxy, the page
    # the dev profile: both CLIs find this cluster without flags; every process serves /metrics
    prof = devprofile.read()
    assert prof is not None and prof.proxy == f"127.0.0.1:{port}" and prof.pid == proc.pid
    status = subprocess.run([sys.executable, "-m", "shardproxy", "cluster", "status", "--json"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": procs.project_pythonpath()})
    assert status.returncode == 0, status.stderr
    assert len(json.loads(status.stdout)["nodes"]) == 2
    from embed.config import EmbedSettings

    assert EmbedSettings().redis_url == prof.redis_url and EmbedSettings().proxy == prof.proxy_uri
    assert prof.token == token and EmbedSettings().token == token  # the CLIs authenticate by default
    with urllib.request.urlopen(prof.metrics["proxy"], timeout=10) as resp:
        assert b"shardproxy_rpcs_total" in resp.read()
    with urllib.request.urlopen(prof.web, timeout=30) as resp:
        assert b"Shop by image" in resp.read()
    with pytest.raises(Exception):  # noqa: B017 - pymilvus wraps UNAUTHENTICATED at connect
        MilvusClient(uri=f"http://127.0.0.1:{port}")
    client = MilvusClient(uri=f"http://127.0.0.1:{port}", token=token)
    make_collection(client, "kept", 8, index="FLAT")
    rows = make_rows(500, 8, seed=5)
    client.insert("kept", rows)
    client.close()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert devprofile.read() is None  # removed on exit
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
