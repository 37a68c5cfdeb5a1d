"""The milvus-lite nodes the project starts keep every acknowledged write through a crash.

milvus-lite 3.2 lets concurrent writes interleave in its write-ahead log; after kill -9 the replay
stops at the first torn message and the rows after it are gone (43,700 of 46,560 acknowledged rows
in one run of this test's workload on the plain ``milvus-lite server``). ``devkit.litenode``
serializes the engine's writes; this test is the workload: concurrent upserts and deletes from
several threads, kill -9, restart on the same data, and every acknowledged row (and no
acknowledged delete) must be there. A delete the kill interrupts was never acknowledged: its rows may
be there or not, so they are not counted either way.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from devkit import litenode, procs

WRITERS = 6
SECONDS = 4.0
BATCH = 20


def _client(node: procs.ManagedProcess) -> MilvusClient:
    return MilvusClient(uri=f"http://{node.address}", timeout=30)


def test_serialize_writes_wraps_every_write_method_once() -> None:
    from milvus_lite.engine.collection import Collection

    assert litenode.serialize_writes() == list(litenode.WRITE_METHODS)
    wrapped = [getattr(Collection, name) for name in litenode.WRITE_METHODS]
    litenode.serialize_writes()  # idempotent: no wrapper around a wrapper
    assert [getattr(Collection, name) for name in litenode.WRITE_METHODS] == wrapped
    assert all(getattr(m, "__devkit_serialized__", False) for m in wrapped)


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = procs.start_milvus(data, name="wal")
    try:
        c = _client(node)
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=8)
        schema.add_field("s", DataType.VARCHAR, max_length=64)
        c.create_collection("wal", schema=schema)
        idx = c.prepare_index_params()
        idx.add_index("v", index_type="FLAT", metric_type="L2")
        c.create_index("wal", idx)
        c.load_collection("wal")

        acked: set[int] = set()
        deleted: set[int] = set()
        in_flight: set[int] = set()  # rows of deletes sent but not acknowledged when the node died
        lock = threading.Lock()
        stop = threading.Event()

        def writer(w: int) -> None:
            cl = _client(node)
            rng = np.random.default_rng(w)
            i = 0
            while not stop.is_set():
                ids = [w * 10_000_000 + i * BATCH + j for j in range(BATCH)]
                i += 1
                try:
                    cl.upsert("wal", [{"id": k, "v": rng.random(8).tolist(), "s": "x" * 40} for k in ids])
                    with lock:
                        acked.update(ids)
                    if i % 3 == 0:
                        gone = ids[:5]
                        with lock:  # a delete the kill interrupts may or may not have been applied
                            in_flight.update(gone)
                        cl.delete("wal", ids=gone)
                        with lock:
                            deleted.update(gone)
                            in_flight.difference_update(gone)
                except Exception:  # noqa: BLE001 - the kill: unacknowledged, not counted
                    return

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(WRITERS)]
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        node.kill()
        stop.set()
        for t in threads:
            t.join(30)
        assert len(acked) > WRITERS * BATCH, "the workload acknowledged too little to mean anything"
    finally:
        node.stop()

    node = procs.start_milvus(data, name="wal")
    try:
        c = _client(node)
        c.load_collection("wal")
        want = sorted(acked - deleted - in_flight)
        got: set[int] = set()
        for i in range(0, len(want), 4000):
            chunk = want[i : i + 4000]
            got |= {r["id"] for r in c.query("wal", filter=f"id in {chunk}", output_fields=["id"], limit=len(chunk))}
        back = sorted(deleted)
        resurrected = {r["id"] for r in c.query("wal", filter=f"id in {back}", output_fields=["id"], limit=len(back))} if back else set()
        lost = len(want) - len(got)
        assert lost == 0, f"{lost} of {len(want)} acknowledged rows lost after kill -9"
        assert not resurrected, f"{len(resurrected)} acknowledged deletes undone after kill -9"
    finally:
        node.stop()


@pytest.mark.parametrize("argv", [["server", "--help"]])
def test_litenode_is_the_milvus_lite_command_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        litenode.main(argv)
    assert exc.value.code == 0
    assert "--data-dir" in capsys.readouterr().out
