"""Prometheus metrics of the proxy and the migrator. Names follow Prometheus conventions: units in
names, ``_total`` counters, bounded label sets (method names, node ids, node states, status codes;
never a collection name or a user value).

Importing this module registers every metric (with the default registry) and pulls in nothing
heavier than ``prometheus_client``, so the migrator and the embedding worker can import it too.
The pipeline's own metrics live in :mod:`embed.metrics`.

Who sets what:

* proxy, per RPC: ``rpcs_total``, ``rpc_duration_seconds`` (``rpc.rpc``);
* proxy, per node call: ``node_call_duration_seconds``, ``node_errors_total``,
  ``node_timeouts_total`` (``NodeClient.call``); ``rows_routed_total`` (writes);
  ``merge_duration_seconds`` (search); ``partial_results_total`` (whoever serves a result with a
  node missing);
* proxy, tail latency and failures: ``hedged_requests_total``, ``hedge_wins_total``,
  ``read_retries_total`` (hedged reads); ``standin_rows_total`` (sloppy-quorum writes);
  ``hints_written_total``, ``hints_replayed_total``, ``hints_refused_total`` (hinted handoff);
* proxy, at scrape time from the live cluster view (:func:`track_cluster`): ``ring_epoch``,
  ``nodes{state}``, ``node_up{node}``, ``replication_factor``;
* migrator: ``migration_*``;
* anything embedding images: ``model_info`` (:func:`set_model_info`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# Node states a registry can hold (mirrors metastore.NodeState; kept here so importing this module
# stays light). Every state is always exported, 0 when no node is in it, so dashboards see no gaps.
NODE_STATES = ("active", "joining", "draining", "drained", "down", "spare")

# -- proxy: RPCs served
RPCS = Counter(
    "shardproxy_rpcs_total", "Milvus-protocol RPCs served, by method and result code", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "shardproxy_rpc_duration_seconds", "Latency of Milvus-protocol RPCs served", ["method"],
    buckets=_LATENCY_BUCKETS,
)

# -- proxy: calls to the nodes (fan-out)
NODE_LATENCY = Histogram(
    "shardproxy_node_call_duration_seconds", "Latency of calls from the proxy to one node",
    ["node", "method"], buckets=_LATENCY_BUCKETS,
)
NODE_ERRORS = Counter(
    "shardproxy_node_errors_total",
    "Failed calls from the proxy to one node (transport failures, timeouts and Milvus error statuses)",
    ["node", "method"],
)
NODE_TIMEOUTS = Counter(
    "shardproxy_node_timeouts_total",
    "Calls from the proxy to one node that ran past their deadline (also counted in node_errors_total)",
    ["node", "method"],
)
MERGE_SECONDS = Histogram(
    "shardproxy_merge_duration_seconds", "Time to merge per-shard search results", buckets=_LATENCY_BUCKETS
)
ROWS_ROUTED = Counter("shardproxy_rows_routed_total", "Rows written to each node", ["node"])
PARTIAL_RESULTS = Counter(
    "shardproxy_partial_results_total",
    "Results served with at least one shard missing (a node down and no replica answered)",
    ["method"],
)

# -- proxy: tail latency and failures (hedged reads, sloppy quorum, hinted handoff)
HEDGES = Counter(
    "shardproxy_hedged_requests_total",
    "Reads re-sent to another replica because a node was slower than its hedge threshold",
    ["method"],
)
HEDGE_WINS = Counter(
    "shardproxy_hedge_wins_total",
    "Hedged reads answered by the hedge before the slow node (the slow call is cancelled)",
    ["method"],
)
READ_RETRIES = Counter(
    "shardproxy_read_retries_total",
    "Reads re-sent to another replica because a node failed or its circuit opened",
    ["method"],
)
STANDIN_ROWS = Counter(
    "shardproxy_standin_rows_total",
    "Row copies sent to a stand-in for a replica node that could not take them (sloppy quorum); node = the replica",
    ["node"],
)
HINTS_WRITTEN = Counter("shardproxy_hints_written_total", "Hints recorded for a node that missed writes", ["node"])
HINTS_REPLAYED = Counter("shardproxy_hints_replayed_total", "Hints replayed to their node (hinted handoff)", ["node"])
HINTS_REFUSED = Counter(
    "shardproxy_hints_refused_total",
    "Hints not recorded because the node's hints are past their bounds (it needs a repair)",
    ["node"],
)

# -- proxy: cluster view (set at scrape time by the collector of track_cluster, or directly)
RING_EPOCH = Gauge("shardproxy_ring_epoch", "Current ring epoch seen by this proxy")
NODES = Gauge("shardproxy_nodes", "Registered nodes by state", ["state"])
REPLICATION_FACTOR = Gauge(
    "shardproxy_replication_factor", "Copies of each row the proxy writes (1 = no replication)"
)

# -- migrator (rebalance): one migration at a time moves rows from a source node to a target node
MIGRATION_ROWS_MOVED = Counter(
    "shardproxy_migration_rows_moved_total", "Rows copied to their new owner by the migrator",
    ["source", "target"],
)
MIGRATION_ROWS_REMAINING = Gauge(
    "shardproxy_migration_rows_remaining", "Rows the running migration still has to move (0 when idle)"
)
MIGRATION_ROWS_PLANNED = Gauge(
    "shardproxy_migration_rows_planned", "Rows the running migration has to move in all (0 when idle)"
)
MIGRATION_ACTIVE = Gauge("shardproxy_migration_active", "1 while a migration (rebalance) runs, else 0")
MIGRATION_BATCH_SECONDS = Histogram(
    "shardproxy_migration_batch_duration_seconds", "Time to copy and delete one batch of rows",
    buckets=_LATENCY_BUCKETS,
)
# verify (shardproxy verify, the background repair's scans) and repair (verifyscan.py, repair.py)
VERIFY_ROWS_SCANNED = Counter("shardproxy_verify_rows_scanned_total", "Rows read and compared by verify scans")
VERIFY_FINDINGS = Gauge(
    "shardproxy_verify_findings", "Problems the last verify scan found, by kind (missing, stray, differs, duplicate)",
    ["kind"],
)
VERIFY_UNREACHABLE = Gauge("shardproxy_verify_unreachable_nodes", "Nodes the last verify scan could not read")
REPAIR_ROWS = Counter(
    "shardproxy_repair_rows_total", "Rows repaired, by action (copied, stray_deleted, reconverged; deleted: by a node rebuild)", ["action"]
)
REPAIR_PASSES = Counter("shardproxy_repair_passes_total", "Repair passes finished (verify + fix; rebuilt: a returning node's key ranges), by result",
                        ["result"])
REPAIR_LAST_PASS = Gauge("shardproxy_repair_last_pass_timestamp_seconds", "Unix time the last repair pass ended")
MIGRATION_ERRORS = Counter(
    "shardproxy_migration_errors_total", "Migration batches that failed (and will be retried)"
)

# -- model identity (proxy serving SearchByImage, embedding worker)
MODEL_INFO = Info("shopbyimage_model", "Identity of the embedding model this process loaded")


def set_model_info(model_id: str, embedder: str = "", dim: int | str = "", detector: str = "") -> None:
    """Publish ``shopbyimage_model_info{model_id=..., embedder=..., dim=..., detector=...} 1``."""
    MODEL_INFO.info({"model_id": model_id, "embedder": embedder, "dim": str(dim), "detector": detector})


def _cluster_value(ref: "weakref.ReferenceType[Any]", fn: Any, default: float = 0.0) -> float:
    cluster = ref()
    if cluster is None:
        return default
    try:
        return float(fn(cluster))
    except Exception:  # noqa: BLE001 - a scrape never fails because of the view
        return default


def _state(node: Any) -> str:
    return str(getattr(node.state, "value", node.state))


def _replication_factor(cluster: Any) -> int:
    rf = getattr(cluster, "replication_factor", None) or getattr(cluster.settings, "replication_factor", None)
    return int(rf or 1)


class NodeUpCollector(Collector):
    """``shardproxy_node_up{node}``: 1 if the node answered the proxy's last health check. Read from
    the live cluster view at scrape time (nodes come and go, so no fixed children)."""

    HELP = "1 if the node answered the proxy's last health check, 0 if not"

    def __init__(self) -> None:
        self._ref: weakref.ReferenceType[Any] | None = None

    def track(self, cluster: Any) -> None:
        self._ref = weakref.ref(cluster)

    def describe(self) -> Iterable[Any]:
        return [GaugeMetricFamily("shardproxy_node_up", self.HELP, labels=["node"])]

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("shardproxy_node_up", self.HELP, labels=["node"])
        cluster = self._ref() if self._ref is not None else None
        if cluster is not None:
            health = getattr(cluster, "_health", {})
            for n in list(cluster.nodes):
                if _state(n) != "spare":
                    up.add_metric([n.id], 1.0 if health.get(n.id) else 0.0)
        yield up


NODE_UP = NodeUpCollector()
REGISTRY.register(NODE_UP)


def track_cluster(cluster: Any) -> None:
    """Export this process's cluster view at scrape time: ``ring_epoch``, ``nodes{state}`` (every
    state, 0 when empty), ``replication_factor`` and ``node_up{node}``. One cluster per process; a
    later call replaces the earlier one. Holds the cluster weakly."""
    ref = weakref.ref(cluster)
    RING_EPOCH.set_function(lambda: _cluster_value(ref, lambda c: max(c.epoch, 0)))
    for state in NODE_STATES:
        NODES.labels(state=state).set_function(
            lambda s=state: _cluster_value(ref, lambda c: sum(1 for n in c.nodes if _state(n) == s))
        )
    REPLICATION_FACTOR.set_function(lambda: _cluster_value(ref, _replication_factor, 1.0))
    NODE_UP.track(cluster)


def metric_names(registry: Any = REGISTRY) -> set[str]:
    """Every sample name the registry can expose (``_total``, ``_bucket``, ``_info`` ... included)."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
        elif family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "info":
            names.add(family.name + "_info")
    return names


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on ``port`` (0 = off)."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, port)
