"""Prometheus metrics of authentication, authorization and rate limits (no secrets in labels:
users are names, never tokens)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

AUTH_FAILURES = Counter("shardproxy_auth_failures_total", "Rejected authentications, by reason",
                        ["reason"])
AUTH_SUCCESSES = Counter("shardproxy_auth_successes_total", "Authenticated calls")
DENIED = Counter("shardproxy_auth_denied_total", "Calls refused PERMISSION_DENIED, by RPC and privilege",
                 ["method", "privilege"])
RATE_LIMITED = Counter("shardproxy_rate_limited_total", "Calls refused RESOURCE_EXHAUSTED by the per-user limit",
                       ["user"])
CATALOG_VERSION = Gauge("shardproxy_auth_catalog_version", "Version of the RBAC catalog this proxy decides on")
CERT_RELOADS = Counter("shardproxy_tls_cert_reloads_total", "Server certificate (re)loads")
