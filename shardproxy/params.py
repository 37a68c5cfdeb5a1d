"""Request parameter helpers: repeated ``KeyValuePair`` fields as dicts, integer parameters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pymilvus.grpc_gen import common_pb2

from shardproxy.errors import InvalidArgument


def kv(pairs: Sequence[common_pb2.KeyValuePair]) -> dict[str, str]:
    return {p.key: p.value for p in pairs}


def int_param(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(json.loads(raw)) if not raw.lstrip("-").isdigit() else int(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{key} must be an integer, got {raw!r}") from exc


def set_kv(pairs: Any, key: str, value: str | None) -> None:
    """Set (or with None remove) one key in a repeated KeyValuePair field."""
    kept = [p for p in pairs if p.key != key]
    del pairs[:]
    pairs.extend(kept)
    if value is not None:
        pairs.append(common_pb2.KeyValuePair(key=key, value=value))
