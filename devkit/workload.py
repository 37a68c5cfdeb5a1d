"""A mixed workload through the proxies (insert, upsert, delete, get, search, query, count),
every operation recorded in a :class:`~devkit.history.History` with its outcome. Seeded.

Each client thread talks to one proxy (clients are built from ``DevCluster.connect_kwargs`` with
that proxy's address). A call that raises is recorded ``info`` (unknown: the write may or may
not have happened); an insert/upsert whose answer acknowledges fewer rows than sent is ``info``
for the rows it does not name (``failed_keys``)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devkit.devcluster import DevCluster
from devkit.history import History

COLL = "jepsen"
DIM = 8
TIMEOUT_S = 20.0


def vec(pk: int) -> list[float]:
    return np.random.default_rng(pk).random(DIM, dtype=np.float32).tolist()


def create(client: Any, replicas: int) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("val", DataType.VARCHAR, max_length=32)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(COLL, schema=schema, index_params=idx,
                             properties={"shardproxy.replicas": str(replicas)})


@dataclass
class Workload:
    cluster: DevCluster
    history: History
    seed: int = 0
    clients: int = 3
    preload: int = 200
    pause_s: float = 0.02
    stop: threading.Event = field(default_factory=threading.Event)
    _next: int = 0
    _known: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, i: int) -> Any:
        from pymilvus import MilvusClient

        kw = self.cluster.connect_kwargs(timeout=TIMEOUT_S)
        proxies = self.cluster.all_proxies
        kw["uri"] = f"http://{proxies[i % len(proxies)].address}"
        return MilvusClient(**kw)

    def load(self) -> None:
        c = self.cluster.client()
        ids = list(range(1, self.preload + 1))
        op = self.history.invoke("setup", "insert", ids, [f"p{i}" for i in ids])
        c.insert(COLL, [{"id": i, "vec": vec(i), "val": f"p{i}"} for i in ids])
        self.history.complete(op, "ok")
        self._known = ids
        self._next = self.preload + 1

    def _new_ids(self, n: int) -> list[int]:
        with self._lock:
            ids = list(range(self._next, self._next + n))
            self._next += n
            self._known.extend(ids)
            return ids

    def _some(self, rng: random.Random, n: int) -> list[int]:
        with self._lock:
            return sorted(set(rng.sample(self._known, min(n, len(self._known)))))

    def _one(self, c: Any, name: str, rng: random.Random) -> None:
        h = self.history
        kind = rng.choices(["insert", "upsert", "delete", "get", "search", "query", "count"],
                           weights=[3, 3, 1, 4, 2, 1, 1])[0]
        if kind in ("insert", "upsert"):
            ids = self._new_ids(5) if kind == "insert" else self._some(rng, 3)
            op = h.invoke(name, kind, ids, [f"{kind[0]}{len(h.ops)}-{i}" for i in ids])
            rows = [{"id": i, "vec": vec(i), "val": v} for i, v in zip(ids, op.values)]
            try:
                res = getattr(c, kind)(COLL, rows)
                n = res.get(f"{kind}_count", 0)
                h.complete(op, "ok" if n == len(ids) else "info",
                           failed_keys=[] if n == len(ids) else ids)
            except Exception as exc:  # noqa: BLE001 - the outcome is unknown
                h.complete(op, "info", error=repr(exc)[:200])
        elif kind == "delete":
            ids = self._some(rng, 2)
            op = h.invoke(name, kind, ids)
            try:
                c.delete(COLL, ids=ids)
                h.complete(op, "ok")
            except Exception as exc:  # noqa: BLE001
                h.complete(op, "info", error=repr(exc)[:200])
        elif kind == "get":
            ids = self._some(rng, 5)
            op = h.invoke(name, kind, ids)
            try:
                got = c.get(COLL, ids=ids, output_fields=["val"])
                h.complete(op, "ok", result={r["id"]: r["val"] for r in got})
                ids_seen = h.invoke(name, "query")  # the raw id list, for the duplicate check
                h.complete(ids_seen, "ok", result=[[r["id"] for r in got]])
            except Exception as exc:  # noqa: BLE001
                h.complete(op, "fail", error=repr(exc)[:200])
        elif kind == "search":
            op = h.invoke(name, kind)
            try:
                res = c.search(COLL, data=[vec(rng.randrange(1, self._next))], limit=10, anns_field="vec")
                h.complete(op, "ok", result=[[hit["id"] for hit in hits] for hits in res])
            except Exception as exc:  # noqa: BLE001
                h.complete(op, "fail", error=repr(exc)[:200])
        elif kind == "query":
            lo = rng.randrange(1, max(2, self._next))
            op = h.invoke(name, kind)
            try:
                res = c.query(COLL, filter=f"id >= {lo} and id < {lo + 60}", output_fields=["id"], limit=100)
                h.complete(op, "ok", result=[[r["id"] for r in res]])
            except Exception as exc:  # noqa: BLE001
                h.complete(op, "fail", error=repr(exc)[:200])
        else:
            op = h.invoke(name, "count")
            try:
                res = c.query(COLL, output_fields=["count(*)"])
                h.complete(op, "ok", result=int(res[0]["count(*)"]))
            except Exception as exc:  # noqa: BLE001
                h.complete(op, "fail", error=repr(exc)[:200])

    def _run(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + i)
        c = self.client(i)
        name = f"c{i}"
        while not self.stop.is_set():
            self._one(c, name, rng)
            time.sleep(self.pause_s)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._run, args=(i,), daemon=True, name=f"wl-{i}")
                   for i in range(self.clients)]
        for t in threads:
            t.start()
        return threads

    def final_state(self) -> tuple[dict[int, str], int]:
        """Every key ever written, read back through the proxy, and count(*)."""
        c = self.cluster.client(timeout=60)
        out: dict[int, str] = {}
        ids = list(range(1, self._next))
        for i in range(0, len(ids), 500):
            for r in c.get(COLL, ids=ids[i : i + 500], output_fields=["val"]):
                assert r["id"] not in out, f"key {r['id']} returned twice by get"
                out[r["id"]] = r["val"]
        count = int(c.query(COLL, output_fields=["count(*)"])[0]["count(*)"])
        return out, count
