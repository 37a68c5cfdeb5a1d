"""Client programs written the way people use pymilvus (tests/programs/) run unchanged against
one plain milvus-lite node and through the proxy, and print the same answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"


def run_program(name: str, uri: str, token: str = "") -> dict:
    """Run one program against ``uri``; ``token`` reaches it as MILVUS_TOKEN (the proxy requires one)."""
    env = {**os.environ, "MILVUS_TOKEN": token}
    proc = subprocess.run([sys.executable, str(PROGRAMS / name), uri], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, f"{name} against {uri} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("program", ["quick_start.py", "alias_switch.py", "db_per_tenant.py",
                                     "partition_key_tenants.py"])
def test_program_same_on_node_and_proxy(dev_cluster, direct_node, program: str) -> None:  # type: ignore[no-untyped-def]
    direct = run_program(program, f"http://{direct_node.address}")
    proxied = run_program(program, dev_cluster.connect_kwargs()["uri"], dev_cluster.token)
    assert proxied == direct


def test_alias_switch_program_is_atomic_through_the_proxy(dev_cluster) -> None:  # type: ignore[no-untyped-def]
    out = run_program("alias_switch.py", dev_cluster.connect_kwargs()["uri"], dev_cluster.token)
    assert out == {"mixed_reads": 0, "errors": 0, "final_version": [2], "described": "prog_catalog_v2"}


def test_db_per_tenant_program_isolates_tenants(dev_cluster) -> None:  # type: ignore[no-untyped-def]
    out = run_program("db_per_tenant.py", dev_cluster.connect_kwargs()["uri"], dev_cluster.token)
    assert out["prog_tenant_a"]["count"] == 10 and out["prog_tenant_b"]["count"] == 25
    assert out["prog_tenant_a"]["tenants_seen"] == ["prog_tenant_a"]
    assert out["switched_count"] == 25 and out["default_has_orders"] is False and out["left"] == []
