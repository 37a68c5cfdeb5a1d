"""Shared by the benchmarks: machine and load records, process memory, percentiles, node startup
per engine, awaiting index builds on either engine, and writing results."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = ("milvus-lite", "milvus")
# gRPC options of every benchmark client. pymilvus pings every 10 s, idle or not
# (keepalive_time_ms=10000, keepalive_permit_without_calls=True); a milvus-lite node keeps gRPC's
# default server policy (no pings without calls, at most one per 5 minutes during calls, 2 strikes)
# and answers GOAWAY too_many_pings after about 80 s of idle: a loader's channel died that way
# during an index wait and the next client to that node failed. Ping only during calls, at most
# every 5 minutes (as embed.store does). ``use_local_subchannel_pool``: a dedicated client gets its
# own TCP connection instead of sharing the process-wide subchannel (and its GOAWAY) with others.
CLIENT_GRPC_OPTIONS: dict[str, Any] = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}
DEDICATED_GRPC_OPTIONS: dict[str, Any] = {**CLIENT_GRPC_OPTIONS, "grpc.use_local_subchannel_pool": 1}


def client(uri: str | None = None, dedicated: bool = False, **kwargs: Any) -> Any:
    """A ``MilvusClient`` with the benchmarks' gRPC options (see ``CLIENT_GRPC_OPTIONS``);
    ``kwargs`` as for ``MilvusClient`` (e.g. a cluster's ``connect_kwargs()``); ``dedicated``: its
    own channel and TCP connection, like a separate client process."""
    from pymilvus import MilvusClient

    if uri is not None:
        kwargs["uri"] = uri
    opts = DEDICATED_GRPC_OPTIONS if dedicated else CLIENT_GRPC_OPTIONS
    kwargs["grpc_options"] = {**opts, **kwargs.get("grpc_options", {})}
    return MilvusClient(dedicated=dedicated, **kwargs)


# Proxy settings of benchmark clusters: on a shared, overloaded machine a node busy building an index
# can miss two 2-second health checks and be marked down mid-run (seen at load ~18 on 2 cores);
# checking every 10 s keeps the measurement about search, not about the health loop.
BENCH_PROXY_ENV = {"SHARDPROXY_HEALTH_INTERVAL_S": "10"}


def machine() -> dict[str, Any]:
    mem = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        if k in ("MemTotal", "MemAvailable"):
            mem[k] = int(v.split()[0]) * 1024
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "mem_total_bytes": mem.get("MemTotal"), "mem_available_bytes": mem.get("MemAvailable")}


def load() -> dict[str, Any]:
    """Load averages (1, 5, 15 min), the time, and free memory: recorded before and after each run."""
    avail = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            avail = int(line.split()[1]) * 1024
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg": list(os.getloadavg()),
            "mem_available_bytes": avail}


def session_pids(leader: int) -> list[int]:
    """All live processes in the session led by ``leader`` (our servers start in their own session,
    so this is the server and every helper it spawned)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # field 6 of stat: session id
            out.append(int(d.name))
    return out


def rss_bytes(leader: int) -> int:
    """Resident memory of a server and its helpers (sum of VmRSS over its session)."""
    total = 0
    for pid in session_pids(leader):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(leader: int) -> float:
    total = 0.0
    for pid in session_pids(leader):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wait_idle(leaders: Sequence[int], window: float = 3.0, busy: float = 0.05, timeout: float = 1800) -> float:
    """Wait until the server processes are idle (CPU below ``busy`` cores over ``window`` s)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        before = sum(cpu_seconds(p) for p in leaders)
        time.sleep(window)
        if (sum(cpu_seconds(p) for p in leaders) - before) / window < busy:
            break
    return time.perf_counter() - t0


def await_index(engine: str, node_uris: Sequence[str], leaders: Sequence[int], collection: str,
                field: str = "vector", timeout: float = 1800) -> float:
    """Wait until every node finished building the collection's index.

    Real Milvus reports progress: ``describe_index`` gives ``state`` and ``indexed_rows`` /
    ``total_rows`` / ``pending_index_rows`` (after a flush), so we poll each node until all rows are
    indexed. milvus-lite builds in a background thread and always says "Finished", so there CPU use
    is the signal (the processes go idle, which also covers compaction). Real Milvus never goes fully
    idle, so there the idle wait after "all rows indexed" is capped at 30 s."""
    t0 = time.perf_counter()
    if engine == "milvus":
        for uri in node_uris:
            c = client(uri)
            try:
                names = c.list_indexes(collection, field_name=field) or [field]
                while time.perf_counter() - t0 < timeout:
                    d = c.describe_index(collection, names[0])
                    total, done = int(d.get("total_rows", 0)), int(d.get("indexed_rows", 0))
                    if str(d.get("state", "")).endswith("Finished") and done >= total and not int(d.get("pending_index_rows", 0)):
                        break
                    time.sleep(1.0)
            finally:
                c.close()
    # A real Milvus standalone never goes fully idle (etcd, time ticks, compaction checks): once it
    # reports every row indexed, give its CPU a bounded settle instead of waiting for zero.
    wait_idle(leaders, timeout=30.0 if engine == "milvus" else max(1.0, timeout - (time.perf_counter() - t0)))
    return time.perf_counter() - t0


def start_node(engine: str, data_dir: Path, name: str):  # type: ignore[no-untyped-def]
    from devkit import procs

    if engine == "milvus":
        return procs.start_milvus_standalone(data_dir, name=name)
    return procs.start_milvus(data_dir, name=name)


def engine_available(engine: str) -> bool:
    if engine == "milvus-lite":
        return True
    import sys

    return (Path(sys.executable).parent / "milvus-server").exists()


INDEX_PARAMS = {"HNSW": {"M": 16, "efConstruction": 100}, "IVF_FLAT": {"nlist": 256}}
SEARCH_PARAMS = {"HNSW": {"params": {"ef": 64}}, "IVF_FLAT": {"params": {"nprobe": 16}}}


def search_params(index: str) -> dict:
    return SEARCH_PARAMS.get(index, {"params": {}})


def create_collection(client: Any, name: str, dim: int, index: str = "FLAT", field: str = "vector",
                      **kwargs: Any) -> None:
    """(Re)create ``name``: INT64 pk ``id``, FLOAT_VECTOR ``field`` with an L2 ``index`` (the
    benchmarks' parameters, ``INDEX_PARAMS``); ``kwargs`` go to ``create_collection``."""
    from pymilvus import DataType, MilvusClient

    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field(field, DataType.FLOAT_VECTOR, dim=dim)
    idx = client.prepare_index_params()
    idx.add_index(field, index_type=index, metric_type="L2", params=INDEX_PARAMS.get(index, {}))
    client.create_collection(name, schema=schema, index_params=idx, **kwargs)


def load_flat_collection(client: Any, name: str, rows: int, dim: int, batch: int = 5000, field: str = "vec",
                         seed: int = 0) -> np.ndarray:
    """Create ``name`` (INT64 pk ``id``, FLOAT_VECTOR ``field``, FLAT index, L2) and insert ``rows``
    standard-normal vectors with ids ``0..rows-1`` in batches; returns the vectors."""
    create_collection(client, name, dim, "FLAT", field=field)
    vecs = np.random.default_rng(seed).standard_normal((rows, dim), dtype=np.float32)
    for s in range(0, rows, batch):
        client.insert(name, [{"id": s + i, field: v} for i, v in enumerate(vecs[s : s + batch].tolist())])
    return vecs


def insert_all(client: Any, name: str, vecs: np.ndarray, batch: int, label: str, first: int = 0,
               field: str = "vector") -> float:
    """Insert ``vecs[first:]`` (ids = row numbers) and flush; seconds taken."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    for start in tqdm(range(first, len(vecs), batch), desc=f"insert {label}", leave=False):
        chunk = vecs[start : start + batch]
        client.insert(name, [{"id": start + i, field: v} for i, v in enumerate(chunk.tolist())])
    client.flush(name)
    return time.perf_counter() - t0


def load_indexed(client: Any, name: str, vecs: np.ndarray, index: str, engine: str, node_uris: Sequence[str],
                 leaders: Sequence[int], label: str, batch: int = 5000) -> float:
    """Create ``name`` with ``index``, insert every row of ``vecs`` and wait until the nodes built
    the index; seconds taken."""
    t0 = time.perf_counter()
    create_collection(client, name, vecs.shape[1], index)
    insert_all(client, name, vecs, batch, label)
    await_index(engine, node_uris, leaders, name)
    return time.perf_counter() - t0


def exact_top10(vecs: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    """Ids (row numbers) of each query's 10 nearest rows by L2: numpy brute force."""
    out = []
    for q in queries:
        d = ((vecs - q) ** 2).sum(axis=1)
        out.append(set(np.argpartition(d, 10)[:10].tolist()))
    return out


def recall_at_10(client: Any, name: str, queries: np.ndarray, truth: list[set[int]], index: str) -> float:
    res = client.search(name, queries.tolist(), limit=10, search_params=search_params(index))
    return sum(len(t & {h["id"] for h in r}) for t, r in zip(truth, res)) / (10 * len(queries))


def interleaved_latency(calls: dict[str, Callable[[Any], object]], queries: Iterable[Any],
                        rotate: bool = False) -> dict[str, list[float]]:
    """Seconds per call of every target for every query, the targets interleaved query by query
    (so machine load hits them alike); with ``rotate`` who goes first changes every query."""
    labels = list(calls)
    out: dict[str, list[float]] = {k: [] for k in labels}
    for n, q in enumerate(queries):
        k = n % len(labels) if rotate else 0
        for label in labels[k:] + labels[:k]:
            t0 = time.perf_counter()
            calls[label](q)
            out[label].append(time.perf_counter() - t0)
    return out


def latency_summary(xs: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean in ms of latencies given in seconds."""
    return {"search_p50_ms": pct(xs, 50), "search_p99_ms": pct(xs, 99),
            "search_mean_ms": float(np.mean(xs) * 1000) if len(xs) else float("nan")}


def pct(xs: Sequence[float], p: float) -> float:
    """Percentile in ms of latencies given in seconds."""
    return float(np.percentile(np.asarray(xs) * 1000, p)) if len(xs) else float("nan")


def write(name: str, data: dict[str, Any], out: Path = RESULTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


def save_figure(fig: Any, path: Path, title: str, res: dict[str, Any]) -> None:
    """Title a benchmark's figure with the load before -> after the run and write it as PNG."""
    fig.suptitle(f"{title}, load {res['load_before']['loadavg'][0]:.1f}->{res['load_after']['loadavg'][0]:.1f}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot
