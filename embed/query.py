"""Query stage: photo -> objects (whole photo + detections) -> embeddings -> vector search -> products."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pymilvus import MilvusClient

from embed.config import EmbedSettings
from embed.detector import detect_objects
from embed.imageio import decode_image
from embed.models import ModelPool
from embed.store import Hit, collection_model_id, connect, group_by_product, search

DEFAULT_TOP_K = 10
MAX_TOP_K = 100


@dataclass
class FoundObject:
    box: tuple[float, float, float, float]
    label: str
    score: float
    matches: list[Hit]

    def to_json(self) -> dict[str, object]:
        return {
            "box": [round(v, 1) for v in self.box],
            "label": self.label,
            "score": round(self.score, 4),
            "matches": [{"product_id": m.product_id, "image_id": m.image_id, "score": round(m.score, 4)}
                        for m in self.matches],
        }


@dataclass
class SearchResult:
    objects: list[FoundObject]
    model_id: str
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds: decode, detect, embed, search


class QueryEngine:
    """Runs searches by image against one Milvus endpoint (the proxy in production)."""

    def __init__(self, settings: EmbedSettings, milvus_uri: str, pool: ModelPool | None = None) -> None:
        self.settings = settings
        self.milvus_uri = milvus_uri
        self.pool = pool or ModelPool(settings)
        self._client: MilvusClient | None = None
        self._client_lock = threading.Lock()
        self._compute = threading.Lock()  # one forward pass at a time: the cores are shared

    @property
    def client(self) -> MilvusClient:
        with self._client_lock:
            if self._client is None:
                self._client = connect(self.milvus_uri, self.settings.access())
            return self._client

    def search_image(
        self, data: bytes, collection: str, *, top_k: int = 0, filter: str = "", max_objects: int = 0
    ) -> SearchResult:
        top_k = min(top_k or DEFAULT_TOP_K, MAX_TOP_K)
        max_objects = max_objects or self.settings.max_objects
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        img = decode_image(data, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels)
        t["decode"] = time.perf_counter() - t0
        model_id = collection_model_id(self.client, collection)
        embedder = self.pool.for_model(model_id, collection)
        detector = self.pool.detector(embedder)
        with self._compute:
            t1 = time.perf_counter()
            objects = detect_objects(detector, img, max_objects)
            t2 = time.perf_counter()
            vectors = embedder.embed([o.crop(img) for o in objects])
            t3 = time.perf_counter()
        t["detect"], t["embed"] = t2 - t1, t3 - t2
        # several images per product: ask for more images than products
        hits = search(self.client, collection, vectors, limit=min(top_k * 4, 16384), filter=filter)
        t["search"] = time.perf_counter() - t3
        found = [FoundObject(o.box, o.label, o.score, group_by_product(h, top_k)) for o, h in zip(objects, hits)]
        return SearchResult(found, embedder.model_id, img.width, img.height, t)
