"""What the shopper's page talks to: the proxy's gRPC SearchByImage and admin API, the catalog
collection (through the proxy, Milvus protocol) and the import queue (Redis). I/O only; the page's
routes and the error wording live in :mod:`embed.web.app`."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pymilvus import MilvusClient

from embed.config import EmbedSettings
from embed.store import BASE_FIELDS, connect
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc
from shopbyimage.v1 import image_search_pb2 as pb
from shopbyimage.v1 import image_search_pb2_grpc as pb_grpc

MODEL_PROPERTY = "shopbyimage.model_id"
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


@dataclass
class Scene:
    jpeg: bytes
    products: list[str]
    boxes: list[tuple[int, int, int, int]]


@dataclass
class Backend:
    settings: EmbedSettings
    search_timeout_s: float = 120.0
    _channel: grpc.aio.Channel | None = None
    _client: MilvusClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scenes: dict[str, list[Scene]] = field(default_factory=dict)
    _fields: dict[str, list[str]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.settings.proxy.split("://", 1)[-1].rstrip("/")

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            access = self.settings.access()
            if access.tls:
                from shardproxy.auth.tls import channel_credentials

                creds = channel_credentials(access.ca, access.cert, access.key)
                self._channel = grpc.aio.secure_channel(self.target, creds, options=GRPC_OPTIONS)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=GRPC_OPTIONS)
        return self._channel

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """The proxy's credential on every gRPC call (none with auth off)."""
        token = self.settings.access().token
        if not token:
            return ()
        from shardproxy.auth.passwords import encode_token

        return (("authorization", encode_token(token)),)

    @property
    def client(self) -> MilvusClient:
        with self._lock:
            if self._client is None:
                self._client = connect(self.settings.proxy, self.settings.access())
            return self._client

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._client is not None:
            self._client.close()

    # --- search ---------------------------------------------------------------------------------
    async def search(self, image: bytes, collection: str, filter: str, top_k: int) -> dict[str, Any]:
        """SearchByImage through the proxy, then the matched products' attributes; grpc.RpcError
        propagates (the routes turn it into a message)."""
        stub = pb_grpc.ImageSearchStub(self.channel())
        t0 = time.perf_counter()
        resp = await stub.SearchByImage(
            pb.SearchByImageRequest(image=image, collection=collection, filter=filter, top_k=top_k),
            timeout=self.search_timeout_s, metadata=self._metadata(),
        )
        t1 = time.perf_counter()
        ids = sorted({m.image_id for o in resp.objects for m in o.matches})
        rows = await asyncio.to_thread(self.rows_by_id, collection, ids)
        t2 = time.perf_counter()
        timings = dict(resp.timings_ms)
        timings["grpc_total"] = 1000 * (t1 - t0)
        timings["attributes"] = 1000 * (t2 - t1)
        objects = []
        for o in resp.objects:
            matches = []
            for m in o.matches:
                row = rows.get(m.image_id, {})
                attrs = {k: v for k, v in row.items() if k not in BASE_FIELDS}
                matches.append({"product_id": m.product_id, "image_id": str(m.image_id), "score": round(m.score, 4),
                                "attributes": attrs})
            objects.append({"box": [o.box.x0, o.box.y0, o.box.x1, o.box.y1], "label": o.label,
                            "score": round(o.score, 4), "matches": matches})
        return {"objects": objects, "width": resp.width, "height": resp.height, "model_id": resp.model_id,
                "timings_ms": {k: round(v, 1) for k, v in timings.items()}}

    # --- catalog (Milvus protocol through the proxy) --------------------------------------------
    def scalar_fields(self, collection: str) -> list[str]:
        if collection not in self._fields:
            desc = self.client.describe_collection(collection)
            self._fields[collection] = [f["name"] for f in desc["fields"] if f["name"] != "vector"]
        return self._fields[collection]

    def rows_by_id(self, collection: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        res = self.client.query(collection, filter=f"image_id in {ids}", output_fields=self.scalar_fields(collection))
        return {int(r["image_id"]): r for r in res}

    def collections(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.client.list_collections()):
            props = self.client.describe_collection(name).get("properties") or {}
            out.append({"name": name, "model_id": props.get(MODEL_PROPERTY, ""), "image_search": MODEL_PROPERTY in props})
        return out

    def products(self, collection: str, page: int, size: int) -> dict[str, Any]:
        total = int(self.client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])
        rows = self.client.query(collection, filter="object_index == 0", output_fields=self.scalar_fields(collection),
                                 limit=size, offset=page * size)
        items = [{"product_id": r["product_id"], "image_id": str(r["image_id"]),
                  "attributes": {k: v for k, v in r.items() if k not in BASE_FIELDS}} for r in rows]
        items.sort(key=lambda r: (r["product_id"], r["image_id"]))
        return {"collection": collection, "page": page, "size": size, "total": total, "items": items}

    def image_path(self, collection: str, image_id: int) -> Path | None:
        """The catalog file of ``image_id``: only paths recorded in the collection are served."""
        res = self.client.query(collection, filter=f"image_id == {image_id}", output_fields=["image_path"])
        return Path(res[0]["image_path"]) if res else None

    def scenes(self, collection: str, n: int = 4) -> list[Scene]:
        """Sample shopper photos made from the collection's own catalog images (products pasted into
        a room, see :mod:`embed.scenes`), so they work with whatever catalog is imported."""
        if collection in self._scenes:
            return self._scenes[collection]
        from embed.imageio import read_image_file
        from embed.scenes import make_scene

        rows = self.client.query(collection, filter="object_index == 0", output_fields=["product_id", "image_path"],
                                 limit=200)
        rows.sort(key=lambda r: r["product_id"])
        picks = [rows[(k * 7) % len(rows)] for k in range(2 * n)] if rows else []
        scenes = []
        for k in range(0, len(picks), 2):
            pair = [p for i, p in enumerate(picks[k:k + 2]) if i == 0 or p["product_id"] != picks[k]["product_id"]]
            try:
                imgs = [(p["product_id"], read_image_file(p["image_path"])) for p in pair]
            except ValueError:
                continue
            sc = make_scene(imgs, seed=4242 + k)
            scenes.append(Scene(sc.jpeg, list(sc.product_ids), list(sc.boxes)))
        self._scenes[collection] = scenes
        return scenes

    # --- the import queue and the cluster -------------------------------------------------------
    def imports(self) -> dict[str, Any]:
        from embed.queue import JobQueue

        q = JobQueue(self.settings.redis_url, self.settings.stream, self.settings.group)
        stats = q.stats()
        stats["dead_letter_list"] = [{"import_id": d.get("import_id", ""), "image_path": d.get("image_path", ""),
                                      "product_id": d.get("product_id", ""), "reason": d.get("reason", "")}
                                     for d in q.dead_letters(limit=50)]
        return stats

    async def cluster(self) -> dict[str, Any]:
        stub = admin_pb2_grpc.ShardAdminStub(self.channel())
        resp = await stub.ClusterStatus(admin_pb2.ClusterStatusRequest(), timeout=30, metadata=self._metadata())
        states = {v: k for k, v in admin_pb2.NodeState.items()}
        return {
            "ring_epoch": resp.ring_epoch,
            "nodes": [{"id": n.id, "address": n.address, "weight": n.weight,
                       "state": states.get(n.state, "?").removeprefix("NODE_STATE_").lower()} for n in resp.nodes],
            "collections": [{"name": c.name, "total_rows": c.total_rows, "properties": dict(c.properties),
                             "nodes": {r.node_id: (r.rows if r.reachable else None) for r in c.nodes}}
                            for c in resp.collections],
        }


def jpeg_thumbnail(path: Path, side: int = 256) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return buf.getvalue()
