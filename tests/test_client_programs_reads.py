"""Client programs written the way people use pymilvus (tests/programs/) run unchanged against one
plain milvus-lite node and through the proxy, and print the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"


def _run(program: str, uri: str, token: str = "") -> dict:
    env = {**os.environ, "MILVUS_URI": uri, "MILVUS_TOKEN": token}
    done = subprocess.run([sys.executable, str(PROGRAMS / program)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("program", ["hybrid_rrf.py", "group_by_product.py", "iterate_all.py"])
def test_program_same_through_proxy(program, dev_cluster, direct_node) -> None:  # type: ignore[no-untyped-def]
    kw = dev_cluster.connect_kwargs()
    through_proxy = _run(program, str(kw["uri"]), str(kw.get("token", "")))
    direct = _run(program, f"http://{direct_node.address}")
    assert through_proxy == direct
    assert all(v for v in through_proxy.values())  # every part answered something
