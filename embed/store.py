"""The catalog collection in Milvus (through the proxy): schema, recorded model id, upsert, search."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from embed.errors import CollectionNotFound, ModelMismatch

log = logging.getLogger(__name__)

MODEL_PROPERTY = "shopbyimage.model_id"
DESCRIPTION_PREFIX = "shopbyimage model_id="
BASE_FIELDS = ("image_id", "product_id", "image_path", "object_index", "vector")


@dataclass(frozen=True)
class Hit:
    image_id: int
    product_id: str
    score: float


def image_key(product_id: str, image_sha256: str, object_index: int) -> int:
    """Deterministic 63-bit primary key: same product, same image bytes, same object -> same key."""
    h = hashlib.sha256(f"{product_id}\x00{image_sha256}\x00{object_index}".encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


# pymilvus pings every 10 s even when idle; a gRPC server with the default policy (milvus-lite)
# answers GOAWAY "too many pings" after a few idle minutes. Ping rarely, and only during calls.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}


def connect(uri: str, access: Any = None) -> MilvusClient:
    """A Milvus-protocol client (the proxy, or a plain Milvus node) with keepalive settings that
    idle well; ``access`` (token, TLS files) defaults to the environment's (EMBED_TOKEN /
    SHARDPROXY_TOKEN, ...)."""
    from embed.config import EmbedSettings
    from shardproxy.auth.client import pymilvus_kwargs

    return MilvusClient(**pymilvus_kwargs(uri, access if access is not None else EmbedSettings().access(),
                                          grpc_options=GRPC_OPTIONS))


def collection_model_id(client: MilvusClient, name: str) -> str | None:
    """The model id recorded with ``name``; CollectionNotFound when it does not exist."""
    if not client.has_collection(name):
        raise CollectionNotFound(name)
    desc = client.describe_collection(name)
    props = desc.get("properties") or {}
    if props.get(MODEL_PROPERTY):
        return str(props[MODEL_PROPERTY])
    d = desc.get("description") or ""
    if d.startswith(DESCRIPTION_PREFIX):
        return d[len(DESCRIPTION_PREFIX):].split()[0]
    return None


def ensure_collection(
    client: MilvusClient, name: str, model_id: str, dim: int, attributes: Mapping[str, DataType]
) -> bool:
    """Create the collection if missing (True when created); refuse one built with another model."""
    if client.has_collection(name):
        existing = collection_model_id(client, name)
        if existing != model_id:
            raise ModelMismatch(name, existing, model_id)
        return False
    schema = client.create_schema(auto_id=False, description=f"{DESCRIPTION_PREFIX}{model_id}")
    schema.add_field("image_id", DataType.INT64, is_primary=True)
    schema.add_field("product_id", DataType.VARCHAR, max_length=512)
    schema.add_field("image_path", DataType.VARCHAR, max_length=2048)
    schema.add_field("object_index", DataType.INT64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    for col, dtype in attributes.items():
        if dtype == DataType.VARCHAR:
            schema.add_field(col, DataType.VARCHAR, max_length=4096)
        else:
            schema.add_field(col, dtype)
    index = client.prepare_index_params()
    index.add_index("vector", metric_type="COSINE", index_type="FLAT")
    client.create_collection(name, schema=schema, index_params=index, properties={MODEL_PROPERTY: model_id})
    log.info("created collection %s (model %s, attributes %s)", name, model_id, list(attributes))
    return True


def count(client: MilvusClient, name: str) -> int:
    if not client.has_collection(name):
        raise CollectionNotFound(name)
    res = client.query(name, filter="", output_fields=["count(*)"])
    return int(res[0]["count(*)"])


def upsert(client: MilvusClient, name: str, rows: Sequence[Mapping[str, Any]]) -> int:
    if not rows:
        return 0
    client.upsert(name, [dict(r) for r in rows])
    return len(rows)


def search(
    client: MilvusClient, name: str, vectors: np.ndarray, *, limit: int, filter: str = ""
) -> list[list[Hit]]:
    """Nearest catalog images for each vector (cosine similarity, best first)."""
    if len(vectors) == 0:
        return []
    res = client.search(
        name, data=[v.tolist() for v in vectors], limit=limit, filter=filter or "",
        output_fields=["product_id"], search_params={"metric_type": "COSINE"},
    )
    return [
        [Hit(int(h["image_id"] if "image_id" in h else h["id"]), str(h["entity"]["product_id"]), float(h["distance"]))
         for h in hits]
        for hits in res
    ]


def group_by_product(hits: Iterable[Hit], top_k: int) -> list[Hit]:
    """One entry per product (its best-scoring image), best first, at most ``top_k``."""
    best: dict[str, Hit] = {}
    for h in hits:
        cur = best.get(h.product_id)
        if cur is None or h.score > cur.score or (h.score == cur.score and h.image_id < cur.image_id):
            best[h.product_id] = h
    return sorted(best.values(), key=lambda h: (-h.score, h.product_id))[:top_k]
