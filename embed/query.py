"""Query stage: photo -> objects (whole photo + detections) -> embeddings -> vector search -> products."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pymilvus import MilvusClient

from embed import objrank
from embed.config import EmbedSettings
from embed.detector import WHOLE_IMAGE_LABEL, detect_objects
from embed.imageio import decode_image
from embed.models import ModelPool
from embed.productdet import CATALOG_HEAD_PREFIX
from embed.refine import refine_objects
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
        trained = detector.detector_id.startswith(CATALOG_HEAD_PREFIX)  # what the order and padding were tuned on
        learned = trained and self.settings.rank == "learned"
        candidates = (self.settings.det_candidates or max_objects - 1) + 1 if learned else max_objects
        with self._compute:
            t1 = time.perf_counter()
            objects = detect_objects(detector, img, max(max_objects, candidates))
            if trained and self.settings.det_refine:
                objects = refine_objects(detector, img, objects, self.settings.det_refine_zoom,  # type: ignore[arg-type]
                                         min_px=self.settings.det_refine_min_px)
            t2 = time.perf_counter()
            pad = self.settings.crop_pad if trained else 0.0
            vectors = embedder.embed([o.crop(img, 0.0 if o.label == WHOLE_IMAGE_LABEL else pad) for o in objects])
            t3 = time.perf_counter()
        t["detect"], t["embed"] = t2 - t1, t3 - t2
        # several images per product: ask for more images than products
        hits = search(self.client, collection, vectors, limit=min(max(top_k, 2) * 4, 16384), filter=filter)
        t["search"] = time.perf_counter() - t3
        found = [FoundObject(o.box, o.label, o.score, group_by_product(h, max(top_k, 2))) for o, h in zip(objects, hits)]
        if learned:
            ev = [evidence(f, img.width, img.height) for f in found]
            found = [found[i] for i in objrank.order(ev, objrank.DEFAULT_WEIGHTS)]
        for f in found:
            f.matches = f.matches[:top_k]
        return SearchResult(found[:max_objects], embedder.model_id, img.width, img.height, t)


def evidence(f: FoundObject, w: int, h: int) -> objrank.ObjectEvidence:
    """What the learned order knows about one found object (its matches are grouped by product)."""
    x0, y0, x1, y1 = f.box
    whole = f.label == WHOLE_IMAGE_LABEL
    s1 = f.matches[0].score if f.matches else 0.0
    s2 = f.matches[1].score if len(f.matches) > 1 else 0.0
    return objrank.ObjectEvidence(0.0 if whole else f.score, whole, (x1 - x0) * (y1 - y0) / max(1.0, w * h), s1, s2,
                                  f.matches[0].product_id if f.matches else None)
