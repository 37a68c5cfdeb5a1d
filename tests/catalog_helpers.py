"""Helpers of the catalog congruence tests: run one pymilvus call on the proxy and on one plain
node, and compare answers or errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or ("err", (code, message)) or ("grpc", status code name)."""
    try:
        return "ok", fn()
    except MilvusException as exc:
        return "err", (exc.code, exc.message)
    except grpc.RpcError as exc:
        return "grpc", exc.code().name  # type: ignore[attr-defined]


def same(proxy: MilvusClient, direct: MilvusClient, call: Callable[[MilvusClient], Any],
         norm: Callable[[Any], Any] = lambda r: r) -> Any:
    """Run ``call`` on both; assert the same outcome (normalised result, or the same error code
    and message, or the same gRPC status); return the proxy's result."""
    a, b = outcome(lambda: call(proxy)), outcome(lambda: call(direct))
    assert a[0] == b[0], f"proxy {a} vs node {b}"
    if a[0] == "ok":
        assert norm(a[1]) == norm(b[1]), f"proxy {a[1]!r} vs node {b[1]!r}"
    else:
        assert a[1] == b[1], f"proxy {a[1]!r} vs node {b[1]!r}"
    return a[1]


def hits(res: Any) -> list[list[tuple]]:
    return [[(h["id"], round(float(h["distance"]), 4), tuple(sorted(h["entity"].items()))) for h in q] for q in res]


def rows_by_id(res: Any) -> list[dict]:
    return sorted((dict(r) for r in res), key=lambda r: r["id"])


def describe_norm(d: dict) -> dict:
    """A describe_collection answer without what each server assigns itself (ids, times,
    aliases: milvus-lite leaves them empty, Milvus and the proxy fill them in)."""
    skip = {"collection_id", "created_timestamp", "update_timestamp", "aliases", "num_shards"}
    out = {k: v for k, v in d.items() if k not in skip}
    out["fields"] = [{k: v for k, v in f.items() if k != "field_id"} for f in d.get("fields", [])]
    return out
