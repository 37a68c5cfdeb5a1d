"""devkit.procs: reading a real Milvus standalone's log for the internal-port clash that makes a start
hang (the start is then retried), and wait_port giving up early on a reported failure."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devkit import procs

CLASH_LINE = ('[2026/11/30 20:28:01.499 +00:00] [ERROR] [rootcoord/service.go:256] ["GrpcServer:failed to listen"] '
              '[error="listen tcp :53102: bind: address already in use"]')


def test_port_clash_found_in_the_standalone_log(tmp_path: Path) -> None:
    assert procs._standalone_port_clash(tmp_path) is None  # no log yet
    log = tmp_path / "logs" / "milvus-stdout.log"
    log.parent.mkdir()
    log.write_text("[INFO] starting\n[INFO] etcd connect done\n")
    assert procs._standalone_port_clash(tmp_path) is None
    log.write_text("[INFO] starting\n" + CLASH_LINE + ' [stack="..."]\n')
    reason = procs._standalone_port_clash(tmp_path)
    assert reason is not None and reason.endswith("bind: address already in use") and ":53102" in reason


def test_wait_port_stops_at_a_reported_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nobody accepts
        with pytest.raises(RuntimeError, match="failed before listening.*clash"):
            procs.wait_port("127.0.0.1", port, 30, None, "node", failed=lambda: "clash")
