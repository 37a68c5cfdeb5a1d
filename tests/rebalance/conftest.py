"""Fixtures for the rebalancing tests: small real clusters (milvus-lite nodes, valkey, proxies)
that the tests may change (add, drain, kill). Function scope: every test gets its own."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from devkit.devcluster import DevCluster
from shardproxy.metastore import MetaStore, NodeRecord
from shardproxy.nodequery import scan_pks
from shardproxy.nodepool import NodeClient

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "items"
DIM = 16


def child_env() -> dict[str, str]:
    """Environment for processes a test starts by hand: this checkout first on PYTHONPATH."""
    old = os.environ.get("PYTHONPATH")
    paths = [str(ROOT), str(ROOT / "gen")] + ([old] if old else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture
def loads() -> Iterator[list]:
    """Load generators started by a test; stopped even when the test fails."""
    started: list[Load] = []
    yield started
    for load in started:
        load.finish()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator:
    started: list[DevCluster] = []

    def make(nodes: int = 3, spare: int = 0, proxies: int = 1, replicas: int = 1, name: str = "c",
             proxy_env: dict[str, str] | None = None, engine: str = "milvus-lite") -> DevCluster:
        c = DevCluster(data_dir=tmp_path / name, nodes=nodes, spare=spare, proxies=proxies, replicas=replicas,
                       proxy_env=dict(proxy_env or {}), engine=engine)
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()


def admin(cluster: DevCluster, address: str | None = None) -> admin_pb2_grpc.ShardAdminStub:
    """Admin stub of the cluster's proxy (or of another proxy ``address``), with root's token."""
    return cluster.admin(address)


def create_collection(conn: dict) -> MilvusClient:
    """``conn``: pymilvus keyword arguments (``cluster.connect_kwargs()``)."""
    client = MilvusClient(**conn)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(COLLECTION, schema=schema, index_params=idx)
    return client


def vectors(ids: np.ndarray) -> np.ndarray:
    """A deterministic, distinct vector per id."""
    out = np.empty((len(ids), DIM), dtype=np.float32)
    for i, pk in enumerate(ids):
        out[i] = np.random.default_rng(int(pk)).standard_normal(DIM, dtype=np.float32)
    return out


def rows(ids: np.ndarray) -> list[dict]:
    vecs = vectors(ids)
    return [{"id": int(pk), "vec": vecs[i].tolist(), "tag": f"t{int(pk) % 7}"} for i, pk in enumerate(ids)]


def fill(client: MilvusClient, n: int, batch: int = 3000) -> np.ndarray:
    ids = np.arange(1, n + 1, dtype=np.int64)
    for i in range(0, n, batch):
        client.insert(COLLECTION, rows(ids[i : i + batch]))
    return ids


def node_pks(address: str, collection: str = COLLECTION) -> list[int]:
    """Every primary key stored on one Milvus node (asked directly, not through the proxy)."""

    async def run() -> list[int]:
        store_rec = await _record()
        client = NodeClient(NodeRecord(id="probe", address=address), 60, 1)
        out: list[int] = []
        last = None
        try:
            while True:
                pks = await scan_pks(client, store_rec, last, 5000)
                if not pks:
                    return out
                out.extend(pks)
                last = pks[-1]
        finally:
            await client.close()

    async def _record():  # the collection record, from the Redis of the running cluster
        store = MetaStore(_CURRENT_REDIS[0])
        try:
            rec = await store.collection(collection)
            assert rec is not None
            return rec
        finally:
            await store.close()

    return asyncio.run(run())


_CURRENT_REDIS: list[str] = [""]


def use_redis(url: str) -> None:
    _CURRENT_REDIS[0] = url


@dataclass
class Load:
    """One client inserting new rows and one searching for existing vectors, in threads,
    through the proxy, while the topology changes."""

    conn: dict  # pymilvus keyword arguments (cluster.connect_kwargs())
    existing: np.ndarray
    next_id: int = 1_000_000
    batch: int = 100
    acked: list[int] = field(default_factory=list)
    insert_errors: list[str] = field(default_factory=list)
    searches: int = 0
    misses: list[tuple[int, object]] = field(default_factory=list)
    search_errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def _insert(self) -> None:
        client = MilvusClient(**self.conn)
        while not self.stop.is_set():
            ids = np.arange(self.next_id, self.next_id + self.batch, dtype=np.int64)
            self.next_id += self.batch
            try:
                res = client.insert(COLLECTION, rows(ids))
                if res["insert_count"] == len(ids):
                    self.acked.extend(int(i) for i in ids)
            except Exception as exc:  # noqa: BLE001 - recorded, the test decides
                self.insert_errors.append(repr(exc))
            time.sleep(0.05)

    def _search(self) -> None:
        client = MilvusClient(**self.conn)
        rng = np.random.default_rng(7)
        while not self.stop.is_set():
            pks = rng.choice(self.existing, size=5, replace=False)
            try:
                res = client.search(COLLECTION, data=vectors(pks).tolist(), limit=3, anns_field="vec")
                self.searches += len(pks)
                for pk, hits in zip(pks, res):
                    if not hits or hits[0]["id"] != int(pk):
                        self.misses.append((int(pk), [h["id"] for h in hits]))
            except Exception as exc:  # noqa: BLE001
                self.search_errors.append(repr(exc))
            time.sleep(0.02)

    def start(self) -> "Load":
        self.threads = [threading.Thread(target=self._insert, daemon=True),
                        threading.Thread(target=self._search, daemon=True)]
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def wait_move_done(stub: admin_pb2_grpc.ShardAdminStub, timeout: float = 300) -> admin_pb2.RebalanceStatusResponse:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
        if not st.active:
            return st
        time.sleep(0.5)
    raise TimeoutError("the rebalance did not finish")


PY = sys.executable
