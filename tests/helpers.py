"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from pymilvus import DataType, MilvusClient


def make_collection(client: MilvusClient, name: str, dim: int, metric: str = "L2", index: str = "FLAT",
                    dynamic: bool = False, auto_id: bool = False, varchar_pk: bool = False) -> None:
    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=auto_id, enable_dynamic_field=dynamic)
    if varchar_pk:
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    else:
        schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("color", DataType.VARCHAR, max_length=16)
    schema.add_field("price", DataType.DOUBLE)
    idx = client.prepare_index_params()
    params = {"M": 16, "efConstruction": 64} if index == "HNSW" else ({"nlist": 32} if index == "IVF_FLAT" else {})
    idx.add_index("vector", index_type=index, metric_type=metric, params=params)
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")


COLORS = ["red", "green", "blue", "black"]


def make_rows(n: int, dim: int, seed: int = 0, start: int = 0, with_id: bool = True) -> list[dict]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    rows = []
    for i in range(n):
        row = {"vector": vecs[i].tolist(), "color": COLORS[(start + i) % 4], "price": float((start + i) % 100)}
        if with_id:
            row["id"] = start + i
        rows.append(row)
    return rows


def brute_force(rows: list[dict], queries: np.ndarray, metric: str, k: int, offset: int = 0,
                where=None) -> list[list[tuple[int, float]]]:  # type: ignore[no-untyped-def]
    """Exact top-k by numpy over everything inserted (ties by id)."""
    sel = [r for r in rows if where is None or where(r)]
    ids = np.array([r["id"] for r in sel])
    x = np.array([r["vector"] for r in sel], dtype=np.float64)
    out = []
    for q in queries.astype(np.float64):
        if metric == "L2":
            s = ((x - q) ** 2).sum(axis=1)
            order = np.lexsort((ids, s))
        elif metric == "IP":
            s = x @ q
            order = np.lexsort((ids, -s))
        else:
            s = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q) + 1e-30)
            order = np.lexsort((ids, -s))
        top = order[offset : offset + k]
        out.append([(int(ids[i]), float(s[i])) for i in top])
    return out


T = TypeVar("T")


def eventually(fn: Callable[[], T], timeout: float = 30.0, errors: type[BaseException] | tuple = Exception) -> T:
    """Call ``fn`` until it stops raising ``errors`` (re-raising the last one after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except errors:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
