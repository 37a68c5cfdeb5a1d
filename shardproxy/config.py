"""Proxy settings: one source of truth, read from environment variables (prefix ``SHARDPROXY_``)
and overridable by CLI flags. ``deploy/`` files refer to exactly these names."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProxySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHARDPROXY_", extra="ignore")

    host: str = Field("127.0.0.1", description="address the proxy binds to")
    port: int = Field(19530, description="port of the Milvus data plane, admin API, health, reflection")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding shard metadata")
    metrics_port: int = Field(0, description="Prometheus /metrics port (0 = off)")
    proxy_id: str = Field("", description="name of this proxy in logs and id blocks (default: host:port)")

    vnodes: int = Field(160, description="virtual nodes per unit of weight on the hash ring")
    node_timeout_s: float = Field(30.0, description="deadline of one call to one Milvus node")
    node_write_concurrency: int = Field(
        1, description="concurrent writes per node and collection (milvus-lite needs 1)"
    )
    max_request_bytes: int = Field(64 * 1024 * 1024, description="largest request the proxy accepts")
    max_top_k: int = Field(16384, description="largest limit (and offset+limit) of a search or query")
    max_nq: int = Field(16384, description="most query vectors in one search")
    order_by_max_rows: int = Field(
        100_000, description="a query with order_by reads every row matching its filter from each node (milvus-lite "
        "nodes do not sort): more than this many on one node is refused (narrow the filter)",
    )
    id_block_size: int = Field(10000, description="auto_id values a proxy reserves from Redis at a time")
    ring_check_interval_s: float = Field(1.0, description="how often the proxy checks the ring epoch")
    default_replicas: int = Field(1, description="replication factor R of new collections (property shardproxy.replicas overrides)")
    default_write_ack: str = Field(
        "quorum",
        description="copies (stand-ins counted) a row needs before a write is acknowledged: one | quorum | all of R "
        "(collection property shardproxy.write_ack overrides)",
    )
    health_interval_s: float = Field(0.5, description="how often each node is probed")
    health_probe_timeout_s: float = Field(
        1.0, description="deadline of one health probe; a hung node fails it (2 failures in a row: circuit open, "
        "marked down); raised while every node answers slowly (a starved machine), see shardproxy/probing.py"
    )
    health_probe_timeout_max_s: float = Field(
        5.0, description="the adaptive probe deadline never exceeds this (a hung node is still found within ~2x this)"
    )
    hedge_factor: float = Field(1.0, description="hedge a read after this multiple of the node's moving p95")
    hedge_min_s: float = Field(0.1, description="never hedge a read sooner than this")
    hedge_max_s: float = Field(1.0, description="always hedge a read after this (and with no latency samples yet)")
    hedge_budget_ratio: float = Field(0.1, description="hedges allowed per read served (token bucket refill)")
    hedge_budget_burst: float = Field(10.0, description="hedges allowed in a burst (token bucket size)")
    write_hedge_s: float = Field(
        1.0, description="a replica that has not acknowledged a write after this long gets a stand-in (R > 1)"
    )
    hint_max_keys: int = Field(100_000, description="most pending hints per node and collection")
    hint_max_age_s: float = Field(
        3600.0, description="a node down longer than this (oldest hint) needs a repair before it serves reads"
    )
    migrator_autostart: bool = Field(True, description="start a migrator process when this proxy starts a move")
    migrator_metrics_port: int = Field(0, description="/metrics port of migrators this proxy starts (0 = off)")
    migrator_log: str = Field("", description="log file of migrators this proxy starts (default /tmp/shardproxy-migrator-PORT.log)")
    migrator_max_rows_per_s: float = Field(0.0, description="pace of migrators this proxy starts, rows/s (0 = unthrottled)")
    migrator_watchdog: bool = Field(True, description="start a migrator when a move runs without one (needs migrator_autostart)")
    repair_interval_s: float = Field(600.0, description="seconds between background verify+repair passes (0 = off); one proxy at a time (Redis lease)")
    repair_rows_per_s: float = Field(1000.0, description="pace of the background verify+repair scan, rows/s (0 = unthrottled)")
    image_search: bool = Field(True, description="serve the plug-in gRPC services (entry point group shardproxy.services; image search) in this process")
    log_level: str = Field("INFO", description="log level")
    log_json: bool = Field(False, description="structured JSON logs instead of readable lines")
    tracing: bool = Field(False, description="OpenTelemetry spans of the search fan-out (needs opentelemetry-sdk)")
    otlp_endpoint: str = Field("", description="OTLP/gRPC collector for spans, e.g. otel-collector:4317 (empty = stderr)")

    # authentication, roles, TLS (see README "Security")
    auth_enabled: bool = Field(True, description="require a token on every call (Milvus's RBAC); false = open proxy")
    root_password: SecretStr = Field(SecretStr(""), description="password of root, set when root does not exist yet")
    root_password_file: str = Field("", description="file holding root's password (a mounted secret)")
    root_password_reset: bool = Field(False, description="overwrite root's stored password with the configured one at start (dev clusters)")
    rate_limit_rps: float = Field(0.0, description="requests per second per user or API key (0 = no limit)")
    rate_limit_burst: float = Field(0.0, description="burst above the rate (default: the rate, at least 1)")
    audit_log: str = Field("", description="file of the JSON audit log (default: stderr)")
    tls_cert: str = Field("", description="PEM server certificate: serve TLS on the gRPC port")
    tls_key: str = Field("", description="PEM key of tls_cert")
    tls_client_ca: str = Field("", description="PEM CA of client certificates: require mutual TLS")
    node_token: SecretStr = Field(SecretStr(""), description="token (user:password) the proxy sends to Milvus nodes (empty = none)")
    node_token_file: str = Field("", description="file holding node_token (a mounted secret; wins over node_token)")
    node_tls_ca: str = Field("", description="PEM CA of the Milvus nodes' certificates: reach nodes over TLS")
    node_tls_cert: str = Field("", description="PEM client certificate for nodes requiring mutual TLS")
    node_tls_key: str = Field("", description="PEM key of node_tls_cert")

    def root_password_value(self) -> str | None:
        """root's configured password (the file wins), or None."""
        if self.root_password_file:
            from pathlib import Path

            text = Path(self.root_password_file).read_text().strip()
            return text or None
        return self.root_password.get_secret_value() or None

    def node_token_value(self) -> str:
        if self.node_token_file:
            from pathlib import Path

            return Path(self.node_token_file).read_text().strip()
        return self.node_token.get_secret_value()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
