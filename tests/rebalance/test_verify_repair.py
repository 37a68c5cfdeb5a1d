"""`shardproxy verify` / `repair` and the background repair on a real R = 2 cluster: damage the
nodes behind the proxy's back (a lost replica row, a stale replica, a stray), check verify names
exactly that, repair fixes it, and the background pass does the same and shows up in /metrics."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from devkit import procs
from devkit.devcluster import DevCluster
from shardproxy.placement import Placement
from shardproxy.ring import Ring, RingNode
from shardproxy.verify import replica_sets
from tests.helpers import eventually
from tests.ops.test_metrics_e2e import scrape, total
from tests.rebalance.conftest import PY, child_env

COLL = "vr_items"
DIM = 8
N = 300


def make(client: MilvusClient) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(COLL, schema=schema, index_params=idx)


def rows(ids: list[int], tag: str = "v1") -> list[dict]:
    rng = np.random.default_rng(1)
    vecs = rng.random((max(ids) + 1, DIM), dtype=np.float32)
    return [{"id": i, "vec": vecs[i].tolist(), "tag": f"{tag}-{i}"} for i in ids]


def cli(c: DevCluster, *args: str) -> tuple[int, dict]:
    out = subprocess.run([PY, "-m", "shardproxy", *args, "--json", "--redis-url", c.redis_url],
                         capture_output=True, text=True, timeout=300, env=child_env())
    assert out.stdout.strip(), out.stderr[-2000:]
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


def findings(report: dict) -> set[tuple[str, str, int]]:
    (coll,) = report["collections"]
    return {(f["kind"], f["node"], f["pk"]) for f in coll["findings"]}


@pytest.fixture
def r2(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = procs.free_port()
    c = DevCluster(data_dir=tmp_path / "c", nodes=3, replicas=2,
                   proxy_env={"SHARDPROXY_METRICS_PORT": str(port), "SHARDPROXY_REPAIR_INTERVAL_S": "0"})
    c.start()
    try:
        yield c, port
    finally:
        c.stop()


def damage(c: DevCluster, pks: tuple[int, int, int]) -> set[tuple[str, str, int]]:
    """Lose ``a`` on its second replica, make ``b`` stale on its second replica, put a stray
    copy of ``s`` on the one node that is not its replica. Returns what verify must find."""
    a, b, s = pks
    ids = [f"node-{i}" for i in range(3)]
    addr = {f"node-{i}": c.milvus[i].address for i in range(3)}
    p = Placement.steady(Ring([RingNode(n) for n in ids]), replicas=2)
    sets = dict(zip(pks, (t for t, _ in replica_sets(p, list(pks)))))
    node = {n: MilvusClient(uri=f"http://{addr[n]}") for n in ids}
    node[sets[a][1]].delete(COLL, ids=[a])
    node[sets[b][1]].upsert(COLL, rows([b], tag="stale"))
    other = next(n for n in ids if n not in sets[s])
    node[other].insert(COLL, rows([s]))
    return {("missing", sets[a][1], a), ("differs", sets[b][1], b), ("stray", other, s)}


def test_verify_names_the_damage_and_repair_fixes_it_cli_and_background(r2) -> None:  # type: ignore[no-untyped-def]
    c, port = r2
    out = subprocess.run([PY, "-m", "shardproxy", "verify", "--collection", "nope", "--redis-url", c.redis_url],
                         capture_output=True, text=True, timeout=120, env=child_env())
    assert out.returncode == 2 and "nope" in out.stderr
    out = subprocess.run([PY, "-m", "shardproxy", "verify", "--redis-url", f"redis://127.0.0.1:{procs.free_port()}/0"],
                         capture_output=True, text=True, timeout=120, env=child_env())
    assert out.returncode == 2 and "error" in out.stderr.lower()
    client = c.client()
    make(client)
    client.insert(COLL, rows(list(range(N))))
    code, rep = cli(c, "verify")
    assert code == 0 and rep["clean"] and rep["collections"][0]["rows"] == N, rep
    assert sum(t["rows"] for t in rep["collections"][0]["nodes"].values()) == 2 * N  # R = 2 copies

    want = damage(c, (11, 22, 33))
    code, rep = cli(c, "verify")
    assert code == 1 and not rep["clean"] and findings(rep) == want, rep
    assert rep["collections"][0]["rows"] == N  # exact distinct count, stray not double counted

    code, dry = cli(c, "repair", "--dry-run")
    assert code == 1 and dry["collections"][0]["repair"]["plan"] == {"copies": 2, "reconverge": 1, "strays": 1,
                                                                   "skipped": 0}
    assert findings(cli(c, "verify")[1]) == want  # dry run changed nothing

    code, fixed = cli(c, "repair")
    assert code == 0, fixed
    r = fixed["collections"][0]["repair"]
    assert (r["copied"], r["reconverged"], r["strays_deleted"]) == (1, 1, 1), r
    code, rep = cli(c, "verify")
    assert code == 0 and rep["clean"] and rep["collections"][0]["rows"] == N, rep
    got = {row["id"]: row["tag"] for row in client.get(COLL, ids=[11, 22, 33], output_fields=["tag"])}
    assert got == {11: "v1-11", 22: "v1-22", 33: "v1-33"}

    # the same repair in the background, under the Redis lease, visible in /metrics
    before = scrape(port)
    want = damage(c, (44, 55, 66))
    assert findings(cli(c, "verify")[1]) == want
    c.proxy_env["SHARDPROXY_REPAIR_INTERVAL_S"] = "2"
    c.restart_proxy()

    def repaired() -> dict:
        s = scrape(port)
        assert total(s, "shardproxy_repair_passes_total") >= 2  # one that fixed, one clean after
        assert total(s, "shardproxy_repair_passes_total", result="clean") >= 1
        return s

    after = eventually(repaired, timeout=180, errors=(AssertionError, OSError))
    assert total(after, "shardproxy_repair_rows_total", action="copied") >= 1
    assert total(after, "shardproxy_repair_rows_total", action="reconverged") >= 1
    assert total(after, "shardproxy_repair_rows_total", action="stray_deleted") >= 1
    assert total(after, "shardproxy_verify_rows_scanned_total") >= 2 * N
    assert total(after, "shardproxy_verify_findings") == 0  # the last (clean) pass found nothing
    assert total(after, "shardproxy_verify_unreachable_nodes") == 0
    assert total(after, "shardproxy_repair_last_pass_timestamp_seconds") > time.time() - 600
    assert total(before, "shardproxy_repair_passes_total") == 0
    code, rep = cli(c, "verify")
    assert code == 0 and rep["collections"][0]["rows"] == N, rep



def test_verify_reports_stand_in_copies_as_hinted_while_a_replica_is_down(r2) -> None:  # type: ignore[no-untyped-def]
    """Issue 11: with a replica down, the stand-ins' copies of rows written meanwhile are hinted
    handoff's business, not strays (repair must not delete them: they are the second copy)."""
    from shopbyimage.v1 import admin_pb2

    c, _ = r2
    client = c.client()
    make(client)
    client.insert(COLL, rows(list(range(1, N + 1))))
    c.milvus[0].kill()
    stub = c.admin()

    def down() -> None:
        states = {n.id: n.state for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
        assert states["node-0"] == admin_pb2.NODE_STATE_DOWN, states

    eventually(down, timeout=60, errors=AssertionError)
    new = list(range(N + 1, N + 61))
    assert client.insert(COLL, rows(new))["insert_count"] == len(new)  # replica + stand-in each
    ring = Ring([RingNode(f"node-{i}") for i in range(3)])
    standins = [pk for pk in new if "node-0" in ring.replicas(pk, 2)]
    assert standins
    code, rep = cli(c, "verify")
    (coll,) = rep["collections"]
    assert code == 1 and coll["unreachable"] == ["node-0"]  # a node down is never clean
    assert not [f for f in coll["findings"] if f["kind"] in ("stray", "missing")], coll["findings"][:5]
    assert coll["hinted"] == len(standins)
    client.close()
