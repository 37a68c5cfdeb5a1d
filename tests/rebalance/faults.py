"""Fault-injection load for the failover tests: searching and inserting clients in threads,
recording every operation's latency and outcome (acknowledged rows, rows reported failed).
Clients are built with ``DevCluster.client()`` (connection settings live there)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from .conftest import COLLECTION, DIM, vectors


def insert_request(ids: np.ndarray) -> milvus_pb2.InsertRequest:
    vecs = vectors(ids)
    pk = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="id")
    pk.scalars.long_data.data.extend(int(i) for i in ids)
    vec = schema_pb2.FieldData(type=schema_pb2.DataType.FloatVector, field_name="vec")
    vec.vectors.dim = DIM
    vec.vectors.float_vector.data.extend(vecs.ravel().tolist())
    tag = schema_pb2.FieldData(type=schema_pb2.DataType.VarChar, field_name="tag")
    tag.scalars.string_data.data.extend(f"t{int(i) % 7}" for i in ids)
    return milvus_pb2.InsertRequest(collection_name=COLLECTION, num_rows=len(ids), fields_data=[pk, vec, tag])


@dataclass
class FaultLoad:
    cluster: Any  # DevCluster
    existing: np.ndarray
    searchers: int = 2
    next_id: int = 1_000_000
    batch: int = 20
    search_timeout_s: float = 15.0
    acked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # rows named in err_index (or whole batch on an RPC error)
    batches: list[tuple[float, int, int]] = field(default_factory=list)  # (t, acked rows, failed rows)
    insert_errors: list[str] = field(default_factory=list)
    search_latency: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    search_errors: list[str] = field(default_factory=list)
    misses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _insert(self) -> None:
        client = self.cluster.client()
        stub = client._get_connection()._stub  # the connection's stub (auth and all), for err_index
        while not self.stop.is_set():
            with self.lock:
                ids = np.arange(self.next_id, self.next_id + self.batch, dtype=np.int64)
                self.next_id += self.batch
            t = time.monotonic()
            try:
                resp = stub.Insert(insert_request(ids), timeout=30)
                ok = [int(ids[i]) for i in resp.succ_index] if resp.status.code else [int(i) for i in ids]
                bad = [int(ids[i]) for i in resp.err_index]
                if resp.status.code and not bad:
                    bad = [int(i) for i in ids if int(i) not in set(ok)]
                if resp.status.code:
                    self.insert_errors.append(resp.status.reason[:300])
            except Exception as exc:  # noqa: BLE001 - recorded, the test decides
                ok, bad = [], [int(i) for i in ids]
                self.insert_errors.append(repr(exc)[:300])
            self.acked.extend(ok)
            self.failed.extend(bad)
            self.batches.append((t, len(ok), len(bad)))
            time.sleep(0.05)

    def _search(self, seed: int) -> None:
        client = self.cluster.client()
        rng = np.random.default_rng(seed)
        while not self.stop.is_set():
            pks = rng.choice(self.existing, size=3, replace=False)
            t = time.monotonic()
            try:
                res = client.search(COLLECTION, data=vectors(pks).tolist(), limit=3, anns_field="vec",
                                    timeout=self.search_timeout_s)
                self.search_latency.append((t, time.monotonic() - t))
                for pk, hits in zip(pks, res):
                    if not hits or hits[0]["id"] != int(pk):
                        self.misses.append(int(pk))
            except Exception as exc:  # noqa: BLE001
                self.search_latency.append((t, time.monotonic() - t))
                self.search_errors.append(repr(exc)[:300])
            time.sleep(0.02)

    def start(self) -> "FaultLoad":
        self.threads = [threading.Thread(target=self._insert, daemon=True)]
        self.threads += [threading.Thread(target=self._search, args=(7 + i,), daemon=True) for i in range(self.searchers)]
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def searches_between(self, t0: float, t1: float) -> list[float]:
        return [d for t, d in self.search_latency if t0 <= t < t1]

    def batches_between(self, t0: float, t1: float) -> list[tuple[float, int, int]]:
        return [b for b in self.batches if t0 <= b[0] < t1]
