"""Prometheus metrics of the proxy. Names follow Prometheus conventions: units in names,
``_total`` counters, bounded label sets (method names, node ids, status codes; never a
collection name or a user value)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RPCS = Counter(
    "shardproxy_rpcs_total", "Milvus-protocol RPCs served, by method and result code", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "shardproxy_rpc_duration_seconds", "Latency of Milvus-protocol RPCs served", ["method"],
    buckets=_LATENCY_BUCKETS,
)
NODE_LATENCY = Histogram(
    "shardproxy_node_call_duration_seconds", "Latency of calls from the proxy to one node",
    ["node", "method"], buckets=_LATENCY_BUCKETS,
)
NODE_ERRORS = Counter(
    "shardproxy_node_errors_total", "Failed calls from the proxy to one node", ["node", "method"]
)
MERGE_SECONDS = Histogram(
    "shardproxy_merge_duration_seconds", "Time to merge per-shard search results", buckets=_LATENCY_BUCKETS
)
ROWS_ROUTED = Counter("shardproxy_rows_routed_total", "Rows written to each node", ["node"])
RING_EPOCH = Gauge("shardproxy_ring_epoch", "Current ring epoch seen by this proxy")
NODES = Gauge("shardproxy_nodes", "Registered nodes by state", ["state"])


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve /metrics on ``port`` (0 = off)."""
    if port:
        start_http_server(port, addr=host)

MIGRATION_ROWS = Counter("shardproxy_migration_rows_moved_total", "Rows carried to their new owner by the migrator")
MIGRATION_REMAINING = Gauge("shardproxy_migration_rows_remaining", "Rows the running move still has to carry")
PARTIAL_RESULTS = Counter(
    "shardproxy_partial_results_total", "Reads answered without some shards (partial policy)", ["method"]
)
